//! Reading and deleting documents (writing is [`super::ingest`]).

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::doc_model::{ChunkList, ChunkOut, Document, DocumentOrder};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::filter::{Columns, Filter, SqlParams};
use crate::http::pagination::Limit;
use crate::state::AppState;

/// Filters on documents: the docs table has no chunk text, so `$text` reads the document's.
pub const DOC_COLUMNS: Columns = Columns {
    metadata: "d.metadata",
    id: "d.id",
    created_at: "d.created_at",
    updated_at: "d.updated_at",
    text: "d.text",
    tsv: "to_tsvector(c_lang.cfg, d.text)",
};

const SELECT: &str = "d.id, d.text, d.metadata, d.chunk_count, d.bytes, d.created_at, d.updated_at";

fn from_row(row: &tokio_postgres::Row) -> Result<Document, ApiError> {
    Ok(Document {
        id: row.try_get("id")?,
        text: row.try_get("text")?,
        metadata: row.try_get("metadata")?,
        chunk_count: row.try_get("chunk_count")?,
        bytes: row.try_get("bytes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn doc_not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource: "document",
        id: id.to_string(),
    }
}

/// A filter's SQL over the docs table `d` (with `c_lang` for `$text.$search`).
fn doc_filter(filter: Option<&Filter>, loaded: &Loaded, params: &mut SqlParams) -> (String, String) {
    match filter {
        None => ("true".into(), String::new()),
        Some(f) => {
            let lang = params.push(loaded.language().to_string());
            (
                f.to_sql(&DOC_COLUMNS, loaded.language(), params),
                format!(", (SELECT {lang}::text::regconfig AS cfg) c_lang"),
            )
        }
    }
}

pub async fn get(state: &AppState, tenant: Uuid, name: &str, id: &str) -> Result<Document, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, false).await?;
    let row = tx
        .query_opt(
            &format!("SELECT {SELECT} FROM {} d WHERE d.id = $1", loaded.tables.docs),
            &[&id],
        )
        .await?
        .ok_or_else(|| doc_not_found(id))?;
    tx.commit().await?;
    from_row(&row)
}

pub async fn chunks(state: &AppState, tenant: Uuid, name: &str, id: &str) -> Result<ChunkList, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, false).await?;
    let exists = tx
        .query_opt(&format!("SELECT 1 FROM {} WHERE id = $1", loaded.tables.docs), &[&id])
        .await?;
    if exists.is_none() {
        return Err(doc_not_found(id));
    }
    let rows = tx
        .query(
            &format!(
                "SELECT chunk_index, text, start_char, end_char FROM {} WHERE document_id = $1 ORDER BY chunk_index",
                loaded.tables.chunks
            ),
            &[&id],
        )
        .await?;
    tx.commit().await?;
    let data = rows
        .iter()
        .map(|r| {
            Ok(ChunkOut {
                chunk_index: r.try_get(0)?,
                text: r.try_get(1)?,
                start_char: r.try_get(2)?,
                end_char: r.try_get(3)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(ChunkList {
        document_id: id.to_string(),
        data,
    })
}

/// A position in a listing: the order column's value (as Unix microseconds for times) and the id.
fn encode_cursor(order: DocumentOrder, doc: &Document) -> String {
    let id: String = doc.id.bytes().map(|b| format!("{b:02x}")).collect();
    match order {
        DocumentOrder::Id => id,
        DocumentOrder::CreatedAt => format!("{}_{id}", doc.created_at.timestamp_micros()),
        DocumentOrder::UpdatedAt => format!("{}_{id}", doc.updated_at.timestamp_micros()),
    }
}

/// Whether `cursor` has the documented shape: `^([0-9]{1,16}_)?[0-9a-f]{0,1024}$`.
pub fn valid_cursor(cursor: &str) -> bool {
    let hex = match cursor.split_once('_') {
        Some((digits, hex)) => {
            if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            hex
        }
        None => cursor,
    };
    hex.len() <= 1024 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Any string of the documented pattern decodes (a made-up one just positions the page somewhere).
fn decode_cursor(cursor: &str) -> (Option<i64>, String) {
    let (micros, hex) = match cursor.split_once('_') {
        Some((m, h)) => (m.parse::<i64>().ok(), h),
        None => (None, cursor),
    };
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks(2)
        .filter_map(|p| std::str::from_utf8(p).ok().and_then(|s| u8::from_str_radix(s, 16).ok()))
        .collect();
    (micros, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn list(
    state: &AppState,
    tenant: Uuid,
    name: &str,
    filter: Option<Filter>,
    order: DocumentOrder,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<(Vec<Document>, Option<String>), ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, false).await?;
    let mut params = SqlParams::new();
    let (condition, from_extra) = doc_filter(filter.as_ref(), &loaded, &mut params);
    let column = match order {
        DocumentOrder::Id => "d.id",
        DocumentOrder::CreatedAt => "d.created_at",
        DocumentOrder::UpdatedAt => "d.updated_at",
    };
    let after = match (cursor.map(decode_cursor), order) {
        (None, _) => "true".to_string(),
        (Some((_, id)), DocumentOrder::Id) => format!("d.id > {}", params.push(id)),
        (Some((micros, id)), _) => {
            let at = chrono::DateTime::from_timestamp_micros(micros.unwrap_or(0)).unwrap_or_default();
            format!("({column}, d.id) > ({}, {})", params.push(at), params.push(id))
        }
    };
    let order_by = if order == DocumentOrder::Id {
        "d.id".to_string()
    } else {
        format!("{column}, d.id")
    };
    let fetch = params.push(limit.fetch());
    let sql = format!(
        "SELECT {SELECT} FROM {} d{from_extra} WHERE ({condition}) AND {after} ORDER BY {order_by} LIMIT {fetch}",
        loaded.tables.docs
    );
    let rows = tx.query(&sql, &params.as_refs()).await?;
    tx.commit().await?;
    let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next = limit
        .trim(&mut data)
        .then(|| data.last().map(|d| encode_cursor(order, d)))
        .flatten();
    Ok((data, next))
}

/// Deletes documents by id or by filter, with their chunks and vectors (the chunks' foreign key
/// cascades), the collection's counters and an audit row, in one transaction.
pub async fn delete(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    target: DeleteTarget<'_>,
) -> Result<u64, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, true).await?;
    let mut params = SqlParams::new();
    let (condition, from_extra) = match target {
        DeleteTarget::Id(id) => (format!("d.id = {}", params.push(id.to_string())), String::new()),
        DeleteTarget::Filter(f) => doc_filter(Some(f), &loaded, &mut params),
    };
    let (docs, ids) = delete_where(&tx, &loaded, &condition, &from_extra, &params).await?;
    if let (DeleteTarget::Id(id), 0) = (target, docs) {
        return Err(doc_not_found(id));
    }
    if docs > 0 {
        audit::record(
            &tx,
            tenant,
            principal,
            Event::new("documents.delete", "collection", loaded.collection.id).details(serde_json::json!({
                "collection": name, "deleted": docs, "ids": ids.iter().take(100).collect::<Vec<_>>()
            })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(u64::try_from(docs).unwrap_or(0))
}

/// Deletes the documents of `ids` in `tx` with their chunks and vectors and updates the
/// collection's counters (no audit row: the caller's own covers it). Returns how many went.
pub async fn remove(tx: &Transaction<'_>, loaded: &Loaded, ids: &[String]) -> Result<i64, ApiError> {
    let mut params = SqlParams::new();
    let condition = format!("d.id = ANY({})", params.push(ids.to_vec()));
    Ok(delete_where(tx, loaded, &condition, "", &params).await?.0)
}

async fn delete_where(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    condition: &str,
    from_extra: &str,
    params: &SqlParams,
) -> Result<(i64, Vec<String>), ApiError> {
    let row = tx
        .query_one(
            &format!(
                "WITH gone AS (DELETE FROM {docs} d USING (SELECT 1) one{from_extra} WHERE {condition} \
                   RETURNING d.id, d.chunk_count, d.bytes) \
                 SELECT count(*)::bigint, coalesce(sum(chunk_count), 0)::bigint, coalesce(sum(bytes), 0)::bigint, \
                   coalesce(array_agg(id) FILTER (WHERE id IS NOT NULL), '{{}}') FROM gone",
                docs = loaded.tables.docs
            ),
            &params.as_refs(),
        )
        .await?;
    let (docs, chunks, bytes, ids): (i64, i64, i64, Vec<String>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
    if docs > 0 {
        tx.execute(
            "UPDATE collections SET document_count = document_count - $2, chunk_count = chunk_count - $3, \
             stored_bytes = stored_bytes - $4, updated_at = now() WHERE id = $1",
            &[&loaded.collection.id, &docs, &chunks, &bytes],
        )
        .await?;
        // For its compaction of the text statistics the removed chunks changed.
        crate::jobs::store::enqueue_merge(tx, loaded.tenant, loaded.collection.id, &loaded.collection.name).await?;
    }
    Ok((docs, ids))
}

#[derive(Clone, Copy)]
pub enum DeleteTarget<'a> {
    Id(&'a str),
    Filter(&'a Filter),
}
