//! The conversations service: one transaction per request.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use super::conversation_model::{
    Conversation, ConversationFilter, ConversationList, CreateConversation, UpdateConversation,
};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::{is_unique_violation, ApiError};
use crate::filter::{Columns, Filter, SqlParams};
use crate::http::pagination::Limit;
use crate::knowledge::model::validate_metadata;
use crate::names::ConversationId;
use crate::state::AppState;

const COLUMNS: &str =
    "id, user_id, title, channel, assistant, metadata, embed_messages, message_count, last_seq, created_at, updated_at";

fn from_row(row: &Row) -> Result<Conversation, ApiError> {
    Ok(Conversation {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        channel: row.try_get("channel")?,
        assistant: row.try_get("assistant")?,
        metadata: row.try_get("metadata")?,
        embed_messages: row.try_get("embed_messages")?,
        message_count: row.try_get("message_count")?,
        last_seq: row.try_get("last_seq")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource: "conversation",
        id: id.to_string(),
    }
}

/// Checks a conversation id from a path.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    ConversationId::parse(id).map(|_| ()).map_err(|_| not_found(id))
}

/// Reads a conversation in `tx` (locking it for the rest of `tx` when asked).
pub async fn load(tx: &Transaction<'_>, id: &str, lock: bool) -> Result<Conversation, ApiError> {
    check_id(id)?;
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM conversations WHERE id = $1{lock}"),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    from_row(&row)
}

/// Marks a conversation as used now (what retention counts from), locking its row for the
/// rest of `tx`; 404 when there is none.
pub async fn touch(tx: &Transaction<'_>, id: &str) -> Result<(), ApiError> {
    check_id(id)?;
    let n = tx
        .execute("UPDATE conversations SET updated_at = now() WHERE id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(())
}

pub async fn create(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    req: CreateConversation,
) -> Result<Conversation, ApiError> {
    req.validate()?;
    let id = req
        .id
        .clone()
        .map(ConversationId::into_string)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO conversations (tenant_id, id, user_id, title, channel, assistant, metadata, embed_messages) \
                 VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &req.user_id,
                &req.title,
                &req.channel,
                &req.assistant,
                &req.metadata.clone().unwrap_or_else(|| serde_json::json!({})),
                &req.embed_messages,
            ],
        )
        .await
        .map_err(|err| match is_unique_violation(&err, "conversations_pkey") {
            true => ApiError::Conflict(format!("a conversation with id `{id}` exists already")),
            false => err.into(),
        })?;
    let conversation = from_row(&row)?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("conversation.create", "conversation", &id),
    )
    .await?;
    tx.commit().await?;
    Ok(conversation)
}

pub async fn get(state: &AppState, tenant: Uuid, id: &str) -> Result<Conversation, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let conversation = load(&tx, id, false).await?;
    tx.commit().await?;
    Ok(conversation)
}

fn encode_cursor(c: &Conversation) -> String {
    format!("{}_{}", c.created_at.timestamp_micros(), c.id)
}

fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let invalid = || ApiError::validation("cursor", "not a cursor returned by this endpoint");
    let (micros, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    ConversationId::parse_as("cursor", id).map_err(|_| invalid())?;
    Ok((at, id.to_string()))
}

pub async fn list(state: &AppState, tenant: Uuid, query: &ConversationFilter) -> Result<ConversationList, ApiError> {
    let limit = Limit::parse(query.limit)?;
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut params = SqlParams::new();
    let mut conditions = vec!["true".to_string()];
    if let Some(user) = &query.user_id {
        conditions.push(format!("user_id = {}", params.push(user.clone())));
    }
    if let Some(text) = query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ApiError::validation("filter", format!("not JSON: {e}")))?;
        let filter = Filter::parse(&value, "filter")?;
        let cols = Columns {
            metadata: "metadata",
            id: "id",
            created_at: "created_at",
            updated_at: "updated_at",
            text: "coalesce(title, '')",
            tsv: "to_tsvector('simple', coalesce(title, ''))",
        };
        conditions.push(filter.to_sql(&cols, "simple", &mut params));
    }
    if let Some((at, id)) = cursor {
        conditions.push(format!("(created_at, id) < ({}, {})", params.push(at), params.push(id)));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM conversations WHERE {} ORDER BY created_at DESC, id DESC LIMIT {}",
        conditions.join(" AND "),
        params.push(limit.fetch())
    );
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx.query(&sql, &params.as_refs()).await?;
    tx.commit().await?;
    let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let more = limit.trim(&mut data);
    let next_cursor = more.then(|| data.last().map(encode_cursor)).flatten();
    Ok(ConversationList { data, next_cursor })
}

pub async fn update(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: &str,
    req: UpdateConversation,
) -> Result<Conversation, ApiError> {
    req.validate()?;
    check_id(id)?;
    let metadata = validate_metadata("metadata", req.metadata)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE conversations SET title = coalesce($2, title), channel = coalesce($3, channel), \
                   assistant = coalesce($4, assistant), metadata = coalesce($5, metadata), \
                   embed_messages = coalesce($6, embed_messages), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &req.title,
                &req.channel,
                &req.assistant,
                &metadata,
                &req.embed_messages,
            ],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    let conversation = from_row(&row)?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("conversation.update", "conversation", id),
    )
    .await?;
    tx.commit().await?;
    Ok(conversation)
}

/// Deletes a conversation with its messages (and their vectors), agent states and workflow.
pub async fn delete(state: &AppState, tenant: Uuid, principal: &Principal, id: &str) -> Result<(), ApiError> {
    check_id(id)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let n = tx.execute("DELETE FROM conversations WHERE id = $1", &[&id]).await?;
    if n == 0 {
        return Err(not_found(id));
    }
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("conversation.delete", "conversation", id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
