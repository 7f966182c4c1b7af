//! The cache service. A store compares the canonical hash of the new data with the current
//! version: the same hash refreshes `fetched_at`/`expires_at` and writes nothing else; another
//! hash appends the current version to the history, then replaces it. With an index target the
//! entry's text is embedded before the transaction and written in it, so the entry and its
//! one searchable document (`<namespace>:<key>`) always agree.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{
    check_key, check_namespace, encode_cursor, parse_cursor, CacheDeleted, CacheEntry, CacheEntryList, CacheHistory,
    CacheVersion, GetParams, HistoryParams, ListParams, PutEntry, DEFAULT_TTL_SECS, MAX_TTL_SECS,
};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::canonical;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::http::pagination::Limit;
use crate::knowledge::index_text::{self, IndexTarget};
use crate::knowledge::model::validate_metadata;
use crate::state::AppState;

const COLUMNS: &str = "namespace, key, data, metadata, content_hash, version, fetched_at, expires_at, changed_at, \
    created_at, index_target, extract(epoch FROM now() - fetched_at)::float8 AS age_secs, now() >= expires_at AS expired";

/// An entry row, with whether it is stale for a given `max_age`.
fn from_row(row: &Row, max_age: Option<u64>) -> Result<CacheEntry, ApiError> {
    let target: Option<serde_json::Value> = row.try_get("index_target")?;
    let age: f64 = row.try_get("age_secs")?;
    let expired: bool = row.try_get("expired")?;
    let hash: Vec<u8> = row.try_get("content_hash")?;
    Ok(CacheEntry {
        namespace: row.try_get("namespace")?,
        key: row.try_get("key")?,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        content_hash: canonical::display(&hash),
        version: row.try_get("version")?,
        fetched_at: row.try_get("fetched_at")?,
        expires_at: row.try_get("expires_at")?,
        changed_at: row.try_get("changed_at")?,
        created_at: row.try_get("created_at")?,
        age_seconds: age.max(0.0),
        stale: expired || max_age.is_some_and(|max| age > max as f64),
        indexed_in: target.and_then(|t| t.get("collection").and_then(|c| c.as_str()).map(str::to_string)),
        changed: None,
        created: None,
    })
}

/// Reads and deletes name what may exist: a namespace or key that breaks the naming rules names
/// nothing, so it is not found (only a store refuses it as invalid).
fn readable(namespace: &str, key: Option<&str>) -> Result<(), ApiError> {
    let valid = check_namespace(namespace).is_ok() && key.is_none_or(|k| check_key(k).is_ok());
    valid.then_some(()).ok_or_else(|| match key {
        Some(key) => entry_not_found(namespace, key),
        None => ApiError::NotFound {
            resource: "cache namespace",
            id: namespace.to_string(),
        },
    })
}

fn entry_not_found(namespace: &str, key: &str) -> ApiError {
    ApiError::NotFound {
        resource: "cache entry",
        id: format!("{namespace}/{key}"),
    }
}

/// The id of an entry's document in its index collection.
fn document_id(namespace: &str, key: &str) -> String {
    format!("{namespace}:{key}")
}

fn document_metadata(namespace: &str, key: &str, metadata: &serde_json::Value) -> serde_json::Value {
    let mut doc = metadata.as_object().cloned().unwrap_or_default();
    doc.insert("source".into(), "cache".into());
    doc.insert("namespace".into(), namespace.into());
    doc.insert("key".into(), key.into());
    serde_json::Value::Object(doc)
}

/// What a store compares against: the current version's hash, metadata and index target.
struct Current {
    hash: Vec<u8>,
    metadata: serde_json::Value,
    target: Option<IndexTarget>,
}

async fn current(tx: &Transaction<'_>, namespace: &str, key: &str, lock: bool) -> Result<Option<Current>, ApiError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = tx
        .query_opt(
            &format!("SELECT content_hash, metadata, index_target FROM cache_entries WHERE namespace = $1 AND key = $2{lock}"),
            &[&namespace, &key],
        )
        .await?;
    row.map(|row| {
        let target: Option<serde_json::Value> = row.try_get(2)?;
        Ok(Current {
            hash: row.try_get(0)?,
            metadata: row.try_get(1)?,
            target: target
                .map(serde_json::from_value)
                .transpose()
                .map_err(anyhow::Error::from)?,
        })
    })
    .transpose()
}

/// Whether the document of an entry must be (re)written: an index target applies and the data,
/// the metadata or the target differ from what is indexed.
fn needs_index(cur: Option<&Current>, target: Option<&IndexTarget>, hash: &[u8], metadata: &serde_json::Value) -> bool {
    let Some(target) = target else { return false };
    match cur {
        None => true,
        Some(c) => {
            c.hash != hash
                || &c.metadata != metadata
                || c.target
                    .as_ref()
                    .is_none_or(|t| t.collection != target.collection || t.text_field != target.text_field)
        }
    }
}

pub async fn put(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    namespace: &str,
    key: &str,
    req: PutEntry,
) -> Result<CacheEntry, ApiError> {
    check_namespace(namespace)?;
    check_key(key)?;
    let metadata = validate_metadata("metadata", req.metadata)?.unwrap_or_else(|| serde_json::json!({}));
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::validation(
            "ttl_seconds",
            format!("1 to {MAX_TTL_SECS} seconds"),
        ));
    }
    if let Some(target) = &req.index {
        target.validate("index")?;
    }
    let hash = canonical::hash(&req.data);

    // Embed (when the indexed text changes) before the transaction opens.
    let before = {
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        let before = current(&tx, namespace, key, false).await?;
        tx.commit().await?;
        before
    };
    let target = req
        .index
        .clone()
        .or_else(|| before.as_ref().and_then(|c| c.target.clone()));
    let planned = if needs_index(before.as_ref(), target.as_ref(), &hash, &metadata) {
        let target = target
            .as_ref()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("index target vanished")))?;
        let text = target.text_of("index", &req.data)?;
        let doc_metadata = document_metadata(namespace, key, &metadata);
        Some(index_text::plan(state, tenant, target, document_id(namespace, key), text, doc_metadata).await?)
    } else {
        None
    };

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let cur = current(&tx, namespace, key, true).await?;
    let target = req
        .index
        .clone()
        .or_else(|| cur.as_ref().and_then(|c| c.target.clone()));
    if planned.is_none() && needs_index(cur.as_ref(), target.as_ref(), &hash, &metadata) {
        return Err(ApiError::Conflict(format!(
            "cache entry {namespace}/{key} was changed by another request while this one was embedding; retry"
        )));
    }
    let target_json = target
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(anyhow::Error::from)?;
    let changed = cur.as_ref().is_none_or(|c| c.hash != hash);
    if cur.is_some() && changed {
        tx.execute(
            "INSERT INTO cache_history (tenant_id, namespace, key, version, data, content_hash, metadata, fetched_at) \
             SELECT tenant_id, namespace, key, version, data, content_hash, metadata, fetched_at FROM cache_entries \
             WHERE namespace = $1 AND key = $2",
            &[&namespace, &key],
        )
        .await?;
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO cache_entries AS e (tenant_id, namespace, key, data, content_hash, metadata, fetched_at, \
                   expires_at, changed_at, index_target) \
                 VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6), now(), $7) \
                 ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET \
                   data = EXCLUDED.data, content_hash = EXCLUDED.content_hash, metadata = EXCLUDED.metadata, \
                   fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at, index_target = EXCLUDED.index_target, \
                   version = e.version + CASE WHEN $8 THEN 1 ELSE 0 END, \
                   changed_at = CASE WHEN $8 THEN EXCLUDED.changed_at ELSE e.changed_at END \
                 RETURNING {COLUMNS}"
            ),
            &[&namespace, &key, &req.data, &hash, &metadata, &(ttl as f64), &target_json, &changed],
        )
        .await?;
    let entry = from_row(&row, None)?;
    let mut wake = false;
    if let Some(planned) = planned {
        // A new target elsewhere: the document moves, so the old collection keeps none.
        if let (Some(old), Some(new)) = (cur.as_ref().and_then(|c| c.target.as_ref()), target.as_ref()) {
            if old.collection != new.collection {
                index_text::unindex(&tx, tenant, &old.collection, &document_id(namespace, key)).await?;
            }
        }
        wake = index_text::apply(&tx, tenant, principal, planned).await?;
    }
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("cache.put", "cache_entry", format!("{namespace}/{key}"))
            .details(serde_json::json!({"changed": changed, "version": entry.version})),
    )
    .await?;
    tx.commit().await?;
    if wake {
        state.jobs.wake();
    }
    Ok(CacheEntry {
        changed: Some(changed),
        created: Some(cur.is_none()),
        ..entry
    })
}

pub async fn get(
    state: &AppState,
    tenant: Uuid,
    namespace: &str,
    key: &str,
    params: &GetParams,
) -> Result<CacheEntry, ApiError> {
    readable(namespace, Some(key))?;
    if params.max_age_seconds.is_some_and(|m| m > MAX_TTL_SECS as u64) {
        return Err(ApiError::validation("max_age_seconds", format!("0 to {MAX_TTL_SECS}")));
    }
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM cache_entries WHERE namespace = $1 AND key = $2"),
            &[&namespace, &key],
        )
        .await?;
    tx.commit().await?;
    let entry = from_row(
        &row.ok_or_else(|| entry_not_found(namespace, key))?,
        params.max_age_seconds,
    )?;
    if entry.stale && !params.allow_stale.unwrap_or(false) {
        let why = if entry.expires_at <= Utc::now() {
            format!("expired at {}", entry.expires_at.to_rfc3339())
        } else {
            format!("fetched {:.0} s ago, over max_age_seconds", entry.age_seconds)
        };
        return Err(ApiError::NotFound {
            resource: "fresh cache entry",
            id: format!("{namespace}/{key} ({why}; allow_stale=true reads it)"),
        });
    }
    Ok(entry)
}

pub async fn list(
    state: &AppState,
    tenant: Uuid,
    namespace: &str,
    params: &ListParams,
) -> Result<CacheEntryList, ApiError> {
    readable(namespace, None)?;
    let limit = Limit::parse(params.limit)?;
    let cursor = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let since: Option<DateTime<Utc>> = params.changed_since;
    let (after_at, after_key) = match &cursor {
        Some((at, key)) => (Some(*at), Some(key.clone())),
        None => (None, None),
    };
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM cache_entries WHERE namespace = $1 \
                   AND ($2::timestamptz IS NULL OR changed_at >= $2) \
                   AND ($3::timestamptz IS NULL OR (changed_at, key) > ($3, $4::text)) \
                 ORDER BY changed_at, key LIMIT $5"
            ),
            &[&namespace, &since, &after_at, &after_key, &limit.fetch()],
        )
        .await?;
    tx.commit().await?;
    let mut data = rows.iter().map(|r| from_row(r, None)).collect::<Result<Vec<_>, _>>()?;
    let more = limit.trim(&mut data);
    let next_cursor = more
        .then(|| data.last().map(|e| encode_cursor(e.changed_at, &e.key)))
        .flatten();
    Ok(CacheEntryList { data, next_cursor })
}

pub async fn history(
    state: &AppState,
    tenant: Uuid,
    namespace: &str,
    key: &str,
    params: &HistoryParams,
) -> Result<CacheHistory, ApiError> {
    readable(namespace, Some(key))?;
    let limit = Limit::parse(params.limit)?;
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            "SELECT version, data, content_hash, metadata, fetched_at, replaced_at FROM cache_history \
             WHERE namespace = $1 AND key = $2 ORDER BY version DESC, replaced_at DESC LIMIT $3",
            &[&namespace, &key, &(limit.fetch() - 1)],
        )
        .await?;
    let exists = !rows.is_empty()
        || tx
            .query_opt(
                "SELECT 1 FROM cache_entries WHERE namespace = $1 AND key = $2",
                &[&namespace, &key],
            )
            .await?
            .is_some();
    tx.commit().await?;
    if !exists {
        return Err(entry_not_found(namespace, key));
    }
    let data = rows
        .iter()
        .map(|r| {
            let hash: Vec<u8> = r.try_get(2)?;
            Ok(CacheVersion {
                version: r.try_get(0)?,
                data: r.try_get(1)?,
                content_hash: canonical::display(&hash),
                metadata: r.try_get(3)?,
                fetched_at: r.try_get(4)?,
                replaced_at: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(CacheHistory { data })
}

/// Deletes the entries of `namespace` (all of them, or the one `key`) with their history and
/// indexed documents, in `tx`. Returns how many entries went.
pub async fn remove(tx: &Transaction<'_>, tenant: Uuid, namespace: &str, key: Option<&str>) -> Result<i64, ApiError> {
    let rows = tx
        .query(
            "DELETE FROM cache_entries WHERE namespace = $1 AND ($2::text IS NULL OR key = $2) RETURNING key, index_target",
            &[&namespace, &key],
        )
        .await?;
    tx.execute(
        "DELETE FROM cache_history WHERE namespace = $1 AND ($2::text IS NULL OR key = $2)",
        &[&namespace, &key],
    )
    .await?;
    let mut by_collection: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for row in &rows {
        let target: Option<serde_json::Value> = row.try_get(1)?;
        if let Some(collection) = target
            .as_ref()
            .and_then(|t| t.get("collection"))
            .and_then(|c| c.as_str())
        {
            let key: String = row.try_get(0)?;
            by_collection
                .entry(collection.to_string())
                .or_default()
                .push(document_id(namespace, &key));
        }
    }
    for (collection, ids) in by_collection {
        index_text::unindex_many(tx, tenant, &collection, &ids).await?;
    }
    Ok(rows.len() as i64)
}

pub async fn delete(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    namespace: &str,
    key: Option<&str>,
) -> Result<CacheDeleted, ApiError> {
    readable(namespace, key)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let deleted = remove(&tx, tenant, namespace, key).await?;
    if let (Some(key), 0) = (key, deleted) {
        return Err(entry_not_found(namespace, key));
    }
    if deleted > 0 {
        let (resource, id) = match key {
            Some(key) => ("cache_entry", format!("{namespace}/{key}")),
            None => ("cache_namespace", namespace.to_string()),
        };
        audit::record(
            &tx,
            tenant,
            principal,
            Event::new("cache.delete", resource, id).details(serde_json::json!({"deleted": deleted})),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(CacheDeleted { deleted })
}
