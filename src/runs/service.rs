//! The runs service: one transaction per request. Creating a run is idempotent under a key:
//! the insert arbitrates on the tenant's unique idempotency key, so of many concurrent retries
//! exactly one creates the run and the others read it back.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{check_message, run_not_found, CreateRun, Run, RunFilter, RunList, RunStatus, UpdateRun};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::{is_unique_violation, ApiError};
use crate::filter::SqlParams;
use crate::http::pagination::{finish_page, newest_first_sql, Cursor, Limit};
use crate::knowledge::index_text;
use crate::state::AppState;

const COLUMNS: &str = "id, actor, status, request_payload, autonomy_level, trace_id, idempotency_key, metadata, \
    error_message, indexed_in, created_at, started_at, completed_at, updated_at";

fn from_row(row: &Row) -> Result<Run, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(Run {
        id: row.try_get("id")?,
        actor: row.try_get("actor")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a run with status {status}")))?,
        request_payload: row.try_get("request_payload")?,
        autonomy_level: row.try_get("autonomy_level")?,
        trace_id: row.try_get("trace_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        metadata: row.try_get("metadata")?,
        error_message: row.try_get("error_message")?,
        indexed_in: row.try_get("indexed_in")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        updated_at: row.try_get("updated_at")?,
        artifacts: None,
    })
}

/// How a create ended: a new run, or the original one of a replayed idempotency key.
pub enum Created {
    New(Run),
    Replayed(Run),
}

/// Creates a run (and indexes its payload when asked), or returns the run an earlier request
/// with the same idempotency key created.
pub async fn create(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    header_key: Option<String>,
    mut req: CreateRun,
) -> Result<Created, ApiError> {
    match (&header_key, &req.idempotency_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::validation(
                "idempotency_key",
                "the Idempotency-Key header and the body's idempotency_key differ",
            ))
        }
        (Some(h), None) => req.idempotency_key = Some(h.clone()),
        _ => {}
    }
    req.validate()?;
    let request_hash = crate::canonical::hash(&serde_json::to_value(&req).map_err(anyhow::Error::from)?);
    if let Some(key) = &req.idempotency_key {
        if let Some(run) = replay(state, tenant, key, &request_hash).await? {
            return Ok(Created::Replayed(run));
        }
    }
    let id = req.id.unwrap_or_else(Uuid::now_v7);
    // Embed before the transaction opens.
    let planned = match &req.index {
        None => None,
        Some(target) => {
            let text = target.text_of("index", &req.request_payload)?;
            let metadata = serde_json::json!({"source": "run", "run_id": id, "actor": req.actor});
            Some(index_text::plan(state, tenant, target, id.to_string(), text, metadata).await?)
        }
    };
    let status = req.status.unwrap_or(RunStatus::Queued);
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let inserted = tx
        .query_opt(
            &format!(
                "INSERT INTO runs (tenant_id, id, actor, status, request_payload, autonomy_level, trace_id, \
                   idempotency_key, request_hash, metadata, indexed_in, started_at, completed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                   CASE WHEN $4 <> 'queued' THEN now() END, CASE WHEN $4 IN ('completed', 'failed', 'cancelled') THEN now() END) \
                 ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                &tenant,
                &id,
                &req.actor,
                &status.as_str(),
                &req.request_payload,
                &req.autonomy_level,
                &req.trace_id,
                &req.idempotency_key,
                &request_hash,
                &req.metadata.clone().unwrap_or_else(|| serde_json::json!({})),
                &req.index.as_ref().map(|i| i.collection.clone()),
            ],
        )
        .await;
    let row = match inserted {
        Ok(Some(row)) => row,
        // Another request with the key committed first (the insert waited for it).
        Ok(None) => {
            // Give the connection back before taking another: concurrent retries must not each
            // hold one while they wait for a second.
            drop(tx);
            drop(client);
            let key = req.idempotency_key.as_deref().unwrap_or_default();
            return replay(state, tenant, key, &request_hash)
                .await?
                .map(Created::Replayed)
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("an idempotency key conflicted but no run holds it"))
                });
        }
        Err(err) if is_unique_violation(&err, "runs_pkey") => {
            return Err(ApiError::Conflict(format!("a run with id {id} exists already")))
        }
        Err(err) if is_unique_violation(&err, "runs_trace_id_key") => {
            return Err(ApiError::Conflict(format!(
                "another run has trace_id `{}`",
                req.trace_id.as_deref().unwrap_or_default()
            )))
        }
        Err(err) => return Err(err.into()),
    };
    let run = from_row(&row)?;
    let wake = match planned {
        Some(planned) => index_text::apply(&tx, tenant, principal, planned).await?,
        None => false,
    };
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("run.create", "run", run.id).details(serde_json::json!({"actor": run.actor, "status": run.status})),
    )
    .await?;
    tx.commit().await?;
    if wake {
        state.jobs.wake();
    }
    Ok(Created::New(run))
}

/// The run created under `key`, if the same request created it; a 409 if another did.
async fn replay(state: &AppState, tenant: Uuid, key: &str, request_hash: &[u8]) -> Result<Option<Run>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS}, request_hash FROM runs WHERE idempotency_key = $1"),
            &[&key],
        )
        .await?;
    tx.commit().await?;
    let Some(row) = row else { return Ok(None) };
    let stored: Vec<u8> = row.try_get(14)?;
    if stored != request_hash {
        return Err(ApiError::IdempotencyConflict(format!(
            "idempotency key `{key}` was used for a different request (run {}); use a new key for a new run",
            row.try_get::<_, Uuid>(0)?
        )));
    }
    Ok(Some(from_row(&row)?))
}

/// Reads a run in `tx`; 404 when the tenant has none with this id.
pub async fn load(tx: &Transaction<'_>, id: Uuid, lock: bool) -> Result<Run, ApiError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = tx
        .query_opt(&format!("SELECT {COLUMNS} FROM runs WHERE id = $1{lock}"), &[&id])
        .await?
        .ok_or_else(|| run_not_found(id))?;
    from_row(&row)
}

pub async fn get(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Run, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let mut run = load(&tx, id, false).await?;
    run.artifacts = Some(super::children::artifacts(&tx, id).await?);
    tx.commit().await?;
    Ok(run)
}

pub async fn list(state: &AppState, tenant: Uuid, filter: &RunFilter) -> Result<RunList, ApiError> {
    let limit = Limit::parse(filter.limit)?;
    let cursor = filter.cursor.as_deref().map(Cursor::parse).transpose()?;
    if let Some(actor) = &filter.actor {
        super::model::check_name("actor", actor, super::model::MAX_NAME)?;
    }
    let mut params = SqlParams::new();
    let mut conditions = vec![];
    if let Some(actor) = &filter.actor {
        conditions.push(format!("actor = {}", params.push(actor.clone())));
    }
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", params.push(status.as_str())));
    }
    if let Some(since) = filter.since {
        conditions.push(format!("created_at >= {}", params.push(since)));
    }
    if let Some(until) = filter.until {
        conditions.push(format!("created_at < {}", params.push(until)));
    }
    let sql = newest_first_sql(COLUMNS, "runs", conditions, &mut params, limit, cursor);
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx.query(&sql, &params.as_refs()).await?;
    tx.commit().await?;
    let data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let (data, next_cursor) = finish_page(limit, data, |r| Cursor::new(r.created_at, r.id));
    Ok(RunList { data, next_cursor })
}

/// Changes a run's status (validated against its lifecycle), end time, error or metadata.
pub async fn update(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: Uuid,
    req: UpdateRun,
) -> Result<Run, ApiError> {
    check_message("error_message", req.error_message.as_ref())?;
    let metadata = crate::knowledge::model::validate_metadata("metadata", req.metadata)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let run = load(&tx, id, true).await?;
    let next = req.status.unwrap_or(run.status);
    if !run.status.may_become(next) {
        return Err(ApiError::InvalidTransition(format!(
            "run {id} is {}; it cannot become {} (queued -> running -> completed | failed | cancelled)",
            run.status.as_str(),
            next.as_str()
        )));
    }
    let ends_now = next.is_terminal() && !run.status.is_terminal();
    if req.completed_at.is_some() && !next.is_terminal() {
        return Err(ApiError::InvalidTransition(format!(
            "run {id} is {}: only a run that has ended (or ends with this change) has a completed_at",
            next.as_str()
        )));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE runs SET status = $2, \
                   started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN now() ELSE started_at END, \
                   completed_at = CASE WHEN $4::timestamptz IS NOT NULL THEN $4 WHEN $3 THEN now() ELSE completed_at END, \
                   error_message = coalesce($5, error_message), metadata = coalesce($6, metadata), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &next.as_str(), &ends_now, &req.completed_at, &req.error_message, &metadata],
        )
        .await?;
    let updated = from_row(&row)?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("run.update", "run", id).details(serde_json::json!({"from": run.status, "to": next})),
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a run with its steps, artifacts and LLM calls (cascading foreign keys) and its
/// indexed document, in one transaction.
pub async fn delete(state: &AppState, tenant: Uuid, principal: &Principal, id: Uuid) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let indexed_in: Option<String> = tx
        .query_opt("DELETE FROM runs WHERE id = $1 RETURNING indexed_in", &[&id])
        .await?
        .ok_or_else(|| run_not_found(id))?
        .try_get(0)?;
    if let Some(collection) = &indexed_in {
        index_text::unindex(&tx, tenant, collection, &id.to_string()).await?;
    }
    audit::record(&tx, tenant, principal, Event::new("run.delete", "run", id)).await?;
    tx.commit().await?;
    Ok(())
}
