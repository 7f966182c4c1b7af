//! Indexing another plane's text into a collection (a run's request payload, a cached tool
//! result): the caller plans the document before its transaction opens (embedding happens
//! there), then applies it in the same transaction as its own row, so the row and its
//! searchable document commit or roll back together.

use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::collections;
use super::doc_model::{DocumentInput, WriteDocuments, MAX_TEXT_CHARS};
use super::documents;
use super::ingest::{self, Mode, Planned};
use super::model::validate_name;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Where to index: a collection of the tenant (one that embeds its text) and, optionally, which
/// part of the JSON is the text.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"collection": "rulings", "text_field": "summary"}))]
pub struct IndexTarget {
    /// The collection's name; it must exist and embed its text (not a bring-your-own one).
    #[schema(min_length = 1, max_length = 63, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    pub collection: String,
    /// A top-level field (`summary`) or a JSON Pointer (`/result/summary`) whose value is the
    /// text; a string is taken as is, anything else as its JSON. Default: the whole value.
    #[schema(min_length = 1, max_length = 256)]
    pub text_field: Option<String>,
}

impl IndexTarget {
    /// Checks the target's shape (whether the collection exists is checked when planning).
    pub fn validate(&self, field: &'static str) -> Result<(), ApiError> {
        validate_name(field, &self.collection)?;
        if self.text_field.as_ref().is_some_and(|f| f.is_empty() || f.len() > 256) {
            return Err(ApiError::validation(field, "`text_field` is 1 to 256 characters"));
        }
        Ok(())
    }

    /// The text to index from `value`.
    pub fn text_of(&self, field: &'static str, value: &serde_json::Value) -> Result<String, ApiError> {
        let part = match self.text_field.as_deref() {
            None => Some(value),
            Some(pointer) if pointer.starts_with('/') => value.pointer(pointer),
            Some(name) => value.get(name),
        };
        let text = match part {
            None => {
                return Err(ApiError::validation(
                    field,
                    format!(
                        "`text_field` `{}` is not in the data",
                        self.text_field.as_deref().unwrap_or_default()
                    ),
                ))
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => crate::canonical::text(other),
        };
        if text.trim().is_empty() {
            return Err(ApiError::validation(field, "the text to index is empty"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::validation(
                field,
                format!("the text to index is longer than {MAX_TEXT_CHARS} characters"),
            ));
        }
        Ok(text)
    }
}

/// Plans the document `id` of `target`'s collection (an upsert: unchanged text embeds nothing).
pub async fn plan(
    state: &AppState,
    tenant: Uuid,
    target: &IndexTarget,
    id: String,
    text: String,
    metadata: serde_json::Value,
) -> Result<Planned, ApiError> {
    let request = WriteDocuments {
        documents: vec![DocumentInput {
            id: Some(id),
            text: Some(text),
            embedding: None,
            metadata: Some(metadata),
            chunking: None,
        }],
        chunking: None,
    };
    ingest::plan(state, tenant, &target.collection, request, Mode::Upsert)
        .await
        .map_err(|err| match err {
            ApiError::InvalidDocument { message, .. } => ApiError::validation("index", message),
            other => other,
        })
}

/// Writes a planned document in `tx`. Returns true when a merge job was queued (wake the
/// workers after the commit).
pub async fn apply(
    tx: &Transaction<'_>,
    tenant: Uuid,
    principal: &Principal,
    planned: Planned,
) -> Result<bool, ApiError> {
    Ok(ingest::apply(tx, tenant, principal, planned).await?.1)
}

/// Removes the document `id` from the collection `name` in `tx`, if both still exist.
pub async fn unindex(tx: &Transaction<'_>, tenant: Uuid, name: &str, id: &str) -> Result<(), ApiError> {
    unindex_many(tx, tenant, name, &[id.to_string()]).await
}

/// Removes the documents `ids` from the collection `name` in `tx` (those that exist; nothing if
/// the collection was deleted).
pub async fn unindex_many(tx: &Transaction<'_>, tenant: Uuid, name: &str, ids: &[String]) -> Result<(), ApiError> {
    match collections::load(tx, tenant, name, true).await {
        Ok(loaded) => {
            documents::remove(tx, &loaded, ids).await?;
            Ok(())
        }
        Err(ApiError::NotFound { .. }) => Ok(()),
        Err(other) => Err(other),
    }
}
