//! Long-term memories. An add embeds the content first, then, in one transaction holding the
//! scope's advisory lock (so two adds of one fact cannot both insert), looks for the same
//! content (hash) or the nearest memory in the scope above the dedupe threshold, and updates
//! it instead of adding a copy. Every add, update and delete is kept in `memory_history`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use pgvector::Vector;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use uuid::Uuid;

use super::memory_model::{
    check_content, expiry, AddMemory, Memory, MemoryChange, MemoryEvent, MemoryFilter, MemoryHistory, MemoryHit,
    MemoryHits, MemoryList, MemorySearch, MemoryWrite, Scope, UpdateMemory,
};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::filter::{Columns, Filter, SqlParams};
use crate::http::pagination::{finish_page, newest_first_sql, Cursor, Limit};
use crate::knowledge::model::validate_metadata;
use crate::knowledge::search_model::{Scores, SearchMode};
use crate::knowledge::search_scope::{
    scope_hits, scope_order, scope_text_alone, ScopeRows, ScopeSearch, SCOPE_LANGUAGE,
};
use crate::state::AppState;

const COLUMNS: &str = "id, content, user_id, agent_id, run_id, metadata, expires_at, created_at, updated_at";
/// Memories that are not expired.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

fn from_row(row: &Row) -> Result<Memory, ApiError> {
    Ok(Memory {
        id: row.try_get("id")?,
        content: row.try_get("content")?,
        user_id: row.try_get("user_id")?,
        agent_id: row.try_get("agent_id")?,
        run_id: row.try_get("run_id")?,
        metadata: row.try_get("metadata")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        resource: "memory",
        id: id.to_string(),
    }
}

fn content_hash(content: &str) -> Vec<u8> {
    Sha256::digest(content.trim().as_bytes()).to_vec()
}

/// The scope as SQL: `user_id IS NOT DISTINCT FROM $n AND ...`.
fn scope_sql(scope: &Scope, params: &mut SqlParams) -> String {
    format!(
        "user_id IS NOT DISTINCT FROM {}::text AND agent_id IS NOT DISTINCT FROM {}::text AND run_id IS NOT DISTINCT FROM {}::text",
        params.push(scope.user_id.clone()),
        params.push(scope.agent_id.clone()),
        params.push(scope.run_id.clone())
    )
}

#[allow(clippy::too_many_arguments)]
async fn record_change(
    tx: &Transaction<'_>,
    memory: Uuid,
    user: Option<&str>,
    event: &str,
    old: (Option<&str>, Option<&serde_json::Value>),
    new: (Option<&str>, Option<&serde_json::Value>),
    reason: &str,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO memory_history (tenant_id, memory_id, user_id, event, old_content, old_metadata, new_content, new_metadata, reason) \
         VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)",
        &[&memory, &user, &event, &old.0, &old.1, &new.0, &new.1, &reason],
    )
    .await?;
    Ok(())
}

pub async fn add(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    req: AddMemory,
) -> Result<MemoryWrite, ApiError> {
    check_content(&req.content)?;
    let scope = Scope::new(req.user_id, req.agent_id, req.run_id)?;
    let metadata = validate_metadata("metadata", req.metadata)?;
    let expires_at = expiry(req.expires_at, req.ttl_seconds)?;
    let hash = content_hash(&req.content);
    let vector = state.embed_query(&req.content).await?;
    let dims = vector.len() as i32;
    let embedding = Vector::from(vector);

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let scope_key = format!("{:?}/{:?}/{:?}", scope.user_id, scope.agent_id, scope.run_id);
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&scope_key])
        .await?;
    // The same content, or else the nearest live memory of the scope.
    let mut params = SqlParams::new();
    let in_scope = scope_sql(&scope, &mut params);
    let h = params.push(hash.clone());
    let q = params.push(embedding.clone());
    let d = params.push(dims);
    let nearest = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS}, content_hash = {h}, 1 - (embedding <=> {q})::float8 FROM memories \
                 WHERE {in_scope} AND {LIVE} AND vector_dims(embedding) = {d} \
                 ORDER BY content_hash = {h} DESC, embedding <=> {q} LIMIT 1"
            ),
            &params.as_refs(),
        )
        .await?;
    let threshold = state.memory_dedupe_threshold;
    let existing = match &nearest {
        Some(row) => {
            let (same, similarity): (bool, f64) = (row.try_get(9)?, row.try_get(10)?);
            (same || similarity >= threshold).then_some((from_row(row)?, same, similarity))
        }
        None => None,
    };
    let result = match existing {
        None => {
            let row = tx
                .query_one(
                    &format!(
                        "INSERT INTO memories (tenant_id, user_id, agent_id, run_id, content, content_hash, metadata, embedding, expires_at) \
                         VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
                    ),
                    &[
                        &scope.user_id,
                        &scope.agent_id,
                        &scope.run_id,
                        &req.content,
                        &hash,
                        &metadata.clone().unwrap_or_else(|| serde_json::json!({})),
                        &embedding,
                        &expires_at,
                    ],
                )
                .await?;
            let memory = from_row(&row)?;
            record_change(
                &tx,
                memory.id,
                scope.user_id.as_deref(),
                "add",
                (None, None),
                (Some(&memory.content), Some(&memory.metadata)),
                "request",
            )
            .await?;
            MemoryWrite {
                event: MemoryEvent::Added,
                memory,
                previous_content: None,
                similarity: None,
            }
        }
        Some((old, same, similarity)) => {
            let new_metadata = metadata.clone().unwrap_or_else(|| old.metadata.clone());
            let unchanged =
                same && new_metadata == old.metadata && expires_at.is_none_or(|e| Some(e) == old.expires_at);
            if unchanged {
                MemoryWrite {
                    event: MemoryEvent::Unchanged,
                    memory: old,
                    previous_content: None,
                    similarity: None,
                }
            } else {
                let row = tx
                    .query_one(
                        &format!(
                            "UPDATE memories SET content = $2, content_hash = $3, metadata = $4, embedding = $5, \
                               expires_at = coalesce($6, expires_at), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
                        ),
                        &[&old.id, &req.content, &hash, &new_metadata, &embedding, &expires_at],
                    )
                    .await?;
                let memory = from_row(&row)?;
                let reason = if same { "duplicate" } else { "similar" };
                record_change(
                    &tx,
                    memory.id,
                    scope.user_id.as_deref(),
                    "update",
                    (Some(&old.content), Some(&old.metadata)),
                    (Some(&memory.content), Some(&memory.metadata)),
                    reason,
                )
                .await?;
                MemoryWrite {
                    event: MemoryEvent::Updated,
                    memory,
                    previous_content: Some(old.content),
                    similarity: (!same).then_some(similarity),
                }
            }
        }
    };
    if result.event != MemoryEvent::Unchanged {
        let action = if result.event == MemoryEvent::Added {
            "memory.add"
        } else {
            "memory.update"
        };
        audit::record(&tx, tenant, principal, Event::new(action, "memory", result.memory.id)).await?;
    }
    tx.commit().await?;
    Ok(result)
}

pub async fn get(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Memory, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM memories WHERE id = $1 AND {LIVE}"),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    from_row(&row)
}

pub async fn list(state: &AppState, tenant: Uuid, query: &MemoryFilter) -> Result<MemoryList, ApiError> {
    let limit = Limit::parse(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::parse).transpose()?;
    let mut params = SqlParams::new();
    let mut conditions = vec![LIVE.to_string()];
    for (column, value) in [
        ("user_id", query.user_id.as_deref()),
        ("agent_id", query.agent_id.as_deref()),
        ("run_id", query.run_id.as_deref()),
    ] {
        if let Some(v) = value {
            conditions.push(format!("{column} = {}", params.push(v.to_string())));
        }
    }
    let sql = newest_first_sql(COLUMNS, "memories", conditions, &mut params, limit, cursor);
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx.query(&sql, &params.as_refs()).await?;
    tx.commit().await?;
    let data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let (data, next_cursor) = finish_page(limit, data, |m| Cursor::new(m.created_at, m.id));
    Ok(MemoryList { data, next_cursor })
}

pub async fn update(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: Uuid,
    req: UpdateMemory,
) -> Result<Memory, ApiError> {
    if let Some(c) = &req.content {
        check_content(c)?;
    }
    let metadata = validate_metadata("metadata", req.metadata)?;
    let expires_at = expiry(req.expires_at, req.ttl_seconds)?;
    let embedding = match &req.content {
        Some(c) => Some(Vector::from(state.embed_query(c).await?)),
        None => None,
    };
    let hash = req.content.as_deref().map(content_hash);
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let old = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM memories WHERE id = $1 AND {LIVE} FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    let old = from_row(&old)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE memories SET content = coalesce($2, content), content_hash = coalesce($3, content_hash), \
                   metadata = coalesce($4, metadata), embedding = coalesce($5, embedding), \
                   expires_at = coalesce($6, expires_at), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &req.content, &hash, &metadata, &embedding, &expires_at],
        )
        .await?;
    let memory = from_row(&row)?;
    record_change(
        &tx,
        id,
        memory.user_id.as_deref(),
        "update",
        (Some(&old.content), Some(&old.metadata)),
        (Some(&memory.content), Some(&memory.metadata)),
        "request",
    )
    .await?;
    audit::record(&tx, tenant, principal, Event::new("memory.update", "memory", id)).await?;
    tx.commit().await?;
    Ok(memory)
}

pub async fn delete(state: &AppState, tenant: Uuid, principal: &Principal, id: Uuid) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!("DELETE FROM memories WHERE id = $1 AND {LIVE} RETURNING {COLUMNS}"),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    let old = from_row(&row)?;
    record_change(
        &tx,
        id,
        old.user_id.as_deref(),
        "delete",
        (Some(&old.content), Some(&old.metadata)),
        (None, None),
        "request",
    )
    .await?;
    audit::record(&tx, tenant, principal, Event::new("memory.delete", "memory", id)).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn history(state: &AppState, tenant: Uuid, id: Uuid) -> Result<MemoryHistory, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            "SELECT event, old_content, new_content, old_metadata, new_metadata, reason, created_at FROM memory_history \
             WHERE memory_id = $1 ORDER BY created_at, id",
            &[&id],
        )
        .await?;
    tx.commit().await?;
    if rows.is_empty() {
        return Err(not_found(id));
    }
    let data = rows
        .iter()
        .map(|r| {
            Ok(MemoryChange {
                event: r.try_get(0)?,
                old_content: r.try_get(1)?,
                new_content: r.try_get(2)?,
                old_metadata: r.try_get(3)?,
                new_metadata: r.try_get(4)?,
                reason: r.try_get(5)?,
                created_at: r.try_get::<_, DateTime<Utc>>(6)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(MemoryHistory { data })
}

/// The conditions that select a scope's live memories (and the filter's), their values added
/// to `params`.
fn in_scope(scope: &Scope, filter: Option<&Filter>, params: &mut SqlParams) -> Vec<String> {
    let mut conditions = vec![LIVE.to_string()];
    // Only the scope ids given narrow the search (a user's memories across agents, say).
    for (column, value) in [
        ("user_id", scope.user_id.as_deref()),
        ("agent_id", scope.agent_id.as_deref()),
        ("run_id", scope.run_id.as_deref()),
    ] {
        if let Some(v) = value {
            conditions.push(format!("memories.{column} = {}", params.push(v.to_string())));
        }
    }
    if let Some(filter) = filter {
        let cols = Columns {
            metadata: "memories.metadata",
            id: "memories.id::text",
            created_at: "memories.created_at",
            updated_at: "memories.updated_at",
            text: "memories.content",
            tsv: "memories.tsv",
        };
        conditions.push(filter.to_sql(&cols, SCOPE_LANGUAGE, params));
    }
    conditions
}

/// The memories of a scope nearest to `vector`, in `tx` (also the context call's part).
pub async fn nearest(
    tx: &Transaction<'_>,
    scope: &Scope,
    vector: &[f32],
    filter: Option<&Filter>,
    k: i64,
    min_score: Option<f64>,
) -> Result<Vec<MemoryHit>, ApiError> {
    let mut params = SqlParams::new();
    let mut conditions = in_scope(scope, filter, &mut params);
    conditions.push(format!("vector_dims(embedding) = {}", params.push(vector.len() as i32)));
    let q = params.push(Vector::from(vector.to_vec()));
    if let Some(min) = min_score {
        conditions.push(format!("1 - (embedding <=> {q}) >= {}", params.push(min)));
    }
    let sql = format!(
        "SELECT {COLUMNS}, 1 - (embedding <=> {q})::float8 FROM memories WHERE {} ORDER BY embedding <=> {q} LIMIT {}",
        conditions.join(" AND "),
        params.push(k)
    );
    let rows = tx.query(&sql, &params.as_refs()).await?;
    rows.iter()
        .map(|row| {
            let score: f64 = row.try_get(9)?;
            Ok(MemoryHit {
                memory: from_row(row)?,
                score,
                scores: Scores {
                    vector: Some(score),
                    distance: Some(1.0 - score),
                    text: None,
                },
            })
        })
        .collect()
}

/// Searches a scope's memories: by meaning (exactly, over the scope's vectors), by words (BM25
/// over the scope), or both fused.
pub async fn search(state: &AppState, tenant: Uuid, req: MemorySearch) -> Result<MemoryHits, ApiError> {
    if req.query.trim().is_empty() || req.query.chars().count() > 10_000 {
        return Err(ApiError::validation("query", "1 to 10000 characters, not blank"));
    }
    let scope = Scope::new(req.user_id, req.agent_id, req.run_id)?;
    let k = req.k.unwrap_or(10);
    if !(1..=100).contains(&k) {
        return Err(ApiError::validation("k", "1 to 100"));
    }
    let search = ScopeSearch::new(req.mode, &req.query, req.fusion.as_ref(), req.min_score, k)?;
    let mode = search.mode;
    let filter = req.filter.as_ref().map(|f| Filter::parse(f, "filter")).transpose()?;
    let fetch = search.fetch;
    let selects = |params: &mut SqlParams| in_scope(&scope, filter.as_ref(), params);
    let rows = ScopeRows {
        from: "memories",
        alias: "memories",
        columns: COLUMNS,
        scope: &selects,
    };
    // The two halves at once, each on a connection of its own: the text half runs while the
    // model embeds the query (before the vector half's transaction: the model never runs inside
    // one) and the vector half runs.
    let vector = async {
        if mode == SearchMode::Text {
            return Ok(None);
        }
        let vector = state.embed_query(&req.query).await?;
        let mut client = state.read_conn(tenant).await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        let min = req.min_score.filter(|_| mode == SearchMode::Vector);
        let hits = nearest(&tx, &scope, &vector, filter.as_ref(), fetch, min).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(Some(hits))
    };
    let text = async {
        match mode {
            SearchMode::Vector => Ok((None, None)),
            SearchMode::Text | SearchMode::Hybrid => scope_text_alone(state, tenant, &search, &rows).await,
        }
    };
    let (vector_hits, (text_rows, text_reason)) = tokio::try_join!(vector, text)?;
    let vector_hits = vector_hits.map(|hits| {
        hits.into_iter()
            .map(|hit| (hit.memory.id, hit.score, hit.memory))
            .collect()
    });
    // The score follows the columns.
    let text_hits = scope_hits(text_rows, 9, |row| from_row(row).map(|m| (m.id, m)))?;
    let data = scope_order(&search, vector_hits, text_hits)
        .into_iter()
        .map(|(memory, score, scores)| MemoryHit { memory, score, scores })
        .collect();
    Ok(MemoryHits { data, text_reason })
}
