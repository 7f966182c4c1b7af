//! The SQL of the jobs table.

use deadpool_postgres::{GenericClient, Pool, Transaction};
use uuid::Uuid;

use super::model::{self, Job, JobFilter, JobKind, JobList, JobState, RecordError};
use crate::error::ApiError;
use crate::http::pagination::{Cursor, Limit};

/// A job to create.
pub struct NewJob<'a> {
    pub tenant: Option<Uuid>,
    pub kind: JobKind,
    pub state: JobState,
    pub collection: Option<(Uuid, &'a str)>,
    pub params: serde_json::Value,
    pub total: Option<i64>,
}

/// Creates a job and returns its id.
pub async fn enqueue(tx: &impl GenericClient, job: NewJob<'_>) -> Result<Uuid, ApiError> {
    let (collection_id, collection_name) = job.collection.map_or((None, None), |(id, name)| (Some(id), Some(name)));
    let row = tx
        .query_one(
            "INSERT INTO jobs (tenant_id, kind, state, collection_id, collection_name, params, total) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &job.tenant,
                &job.kind.as_str(),
                &job.state.as_str(),
                &collection_id,
                &collection_name,
                &job.params,
                &job.total,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Seconds a queued merge waits before it looks at the open segment: a burst of writes queues
/// one merge, which seals the segment once it is full or the writes pause (see
/// [`crate::knowledge::segments`]).
pub const MERGE_DELAY_SECS: f64 = 1.0;

/// Queues a merge of the collection's open segment unless one is queued.
pub async fn enqueue_merge(tx: &Transaction<'_>, tenant: Uuid, collection: Uuid, name: &str) -> Result<(), ApiError> {
    enqueue_collection_job(tx, JobKind::Merge, tenant, (collection, name), MERGE_DELAY_SECS).await
}

/// Queues a job of `kind` (merge or compact) on the collection in `delay` seconds, unless one
/// is queued. A writer that finds the queued job goes on without touching it: pushing it back
/// (an upsert, as before) locked its row and made each writer of a collection wait for the last.
pub async fn enqueue_collection_job(
    tx: &Transaction<'_>,
    kind: JobKind,
    tenant: Uuid,
    (collection, name): (Uuid, &str),
    delay: f64,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO jobs (tenant_id, kind, collection_id, collection_name, run_after) \
         SELECT $1, $5, $2, $3, now() + make_interval(secs => $4) \
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE collection_id = $2 AND kind = $5 AND state = 'queued') \
         ON CONFLICT (collection_id, kind) WHERE state = 'queued' AND kind IN ('merge', 'sweep', 'compact') DO NOTHING",
        &[&tenant, &collection, &name, &delay, &kind.as_str()],
    )
    .await?;
    Ok(())
}

/// An active (not finished) job of one of `kinds` on the collection, if any.
pub async fn active_on(
    tx: &Transaction<'_>,
    collection: Uuid,
    kinds: &[&str],
) -> Result<Option<(Uuid, String)>, ApiError> {
    let row = tx
        .query_opt(
            "SELECT id, kind FROM jobs WHERE collection_id = $1 AND kind = ANY($2) \
             AND state IN ('receiving', 'queued', 'running') LIMIT 1",
            &[&collection, &kinds],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub tenant: Option<Uuid>,
    pub kind: JobKind,
    pub collection_id: Option<Uuid>,
    pub collection_name: Option<String>,
    pub params: serde_json::Value,
    pub checkpoint: serde_json::Value,
    pub done: i64,
    pub attempts: i32,
}

/// What the claim query found: a job to run, or an upload whose server died.
pub enum Claim {
    Run(Claimed),
    Abandoned { id: Uuid, params: serde_json::Value },
}

/// Claims the oldest runnable job: a queued one due now, or a running one whose worker stopped
/// heartbeating `stale_secs` ago (it resumes from its checkpoint). A `receiving` import whose
/// upload stalled as long is handed back as abandoned.
pub async fn claim(pool: &Pool, worker: &str, stale_secs: f64) -> Result<Option<Claim>, ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE jobs j SET \
                 state = CASE WHEN j.state = 'receiving' THEN 'failed' ELSE 'running' END, \
                 worker = $1, heartbeat_at = now(), updated_at = now(), \
                 started_at = coalesce(j.started_at, now()), attempts = j.attempts + 1, \
                 error = CASE WHEN j.state = 'receiving' THEN 'the upload stopped before its end (the server restarted \
                   or the client went away)' ELSE j.error END, \
                 error_code = CASE WHEN j.state = 'receiving' THEN 'upload_interrupted' ELSE j.error_code END, \
                 finished_at = CASE WHEN j.state = 'receiving' THEN now() END \
             FROM (SELECT id, state AS old_state FROM jobs \
                   WHERE (state = 'queued' AND run_after <= now()) \
                      OR (state IN ('running', 'receiving') AND heartbeat_at < now() - make_interval(secs => $2)) \
                   ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED) c \
             WHERE j.id = c.id \
             RETURNING j.id, j.tenant_id, j.kind, j.collection_id, j.collection_name, j.params, j.checkpoint, j.done, \
                       j.attempts, c.old_state",
            &[&worker, &stale_secs],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let old_state: String = row.try_get(9)?;
    if old_state == "receiving" {
        return Ok(Some(Claim::Abandoned {
            id: row.try_get(0)?,
            params: row.try_get(5)?,
        }));
    }
    let kind: String = row.try_get(2)?;
    Ok(Some(Claim::Run(Claimed {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        kind: JobKind::parse(&kind).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("job of unknown kind {kind}")))?,
        collection_id: row.try_get(3)?,
        collection_name: row.try_get(4)?,
        params: row.try_get(5)?,
        checkpoint: row.try_get(6)?,
        done: row.try_get(7)?,
        attempts: row.try_get(8)?,
    })))
}

/// Marks the job alive; returns whether a cancel was asked for (or the job is gone).
pub async fn heartbeat(pool: &Pool, id: Uuid, worker: &str) -> Result<bool, ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND worker = $2 RETURNING cancel_requested",
            &[&id, &worker],
        )
        .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => true,
    })
}

/// Records progress in the transaction of the work it covers; returns whether a cancel was
/// asked for.
pub async fn checkpoint(
    tx: &Transaction<'_>,
    id: Uuid,
    checkpoint: &serde_json::Value,
    done: i64,
) -> Result<bool, ApiError> {
    let row = tx
        .query_opt(
            "UPDATE jobs SET checkpoint = $2, done = $3, heartbeat_at = now(), updated_at = now() WHERE id = $1 \
             RETURNING cancel_requested",
            &[&id, checkpoint, &done],
        )
        .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => true,
    })
}

pub async fn set_total(pool: &Pool, id: Uuid, total: i64) -> Result<(), ApiError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE jobs SET total = $2, updated_at = now() WHERE id = $1",
            &[&id, &total],
        )
        .await?;
    Ok(())
}

/// Ends the job in `state` (completed, failed or cancelled).
pub async fn finish(
    client: &impl GenericClient,
    id: Uuid,
    state: JobState,
    error: Option<(&str, &str)>,
) -> Result<(), ApiError> {
    let (code, message) = error.map_or((None, None), |(c, m)| (Some(c), Some(m)));
    client
        .execute(
            "UPDATE jobs SET state = $2, error_code = $3, error = $4, finished_at = now(), updated_at = now(), \
             heartbeat_at = now() WHERE id = $1",
            &[&id, &state.as_str(), &code, &message],
        )
        .await?;
    Ok(())
}

/// Adds record errors (the first 100 are kept) and counts them all.
pub async fn add_errors(
    client: &impl GenericClient,
    id: Uuid,
    errors: &[RecordError],
    count: i64,
) -> Result<(), ApiError> {
    let errors = serde_json::to_value(errors).map_err(anyhow::Error::new)?;
    client
        .execute(
            "UPDATE jobs SET errors = (SELECT coalesce(jsonb_agg(e), '[]'::jsonb) FROM \
               (SELECT e FROM jsonb_array_elements(errors || $2) e LIMIT 100) s), \
               error_count = error_count + $3, updated_at = now() WHERE id = $1",
            &[&id, &errors, &count],
        )
        .await?;
    Ok(())
}

pub async fn get(tx: &Transaction<'_>, id: Uuid) -> Result<Job, ApiError> {
    let row = tx
        .query_opt(
            &format!("SELECT {} FROM jobs WHERE id = $1 AND kind <> 'sweep'", model::COLUMNS),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "job",
            id: id.to_string(),
        })?;
    model::from_row(&row)
}

pub async fn list(
    tx: &Transaction<'_>,
    filter: &JobFilter,
    limit: Limit,
    cursor: Option<Cursor>,
) -> Result<JobList, ApiError> {
    let (before_ts, before_id) = cursor.map(|c| (Some(c.created_at), Some(c.id))).unwrap_or((None, None));
    let state = filter.state.map(JobState::as_str);
    let kind = filter.kind.map(JobKind::as_str);
    let rows = tx
        .query(
            &format!(
                "SELECT {} FROM jobs WHERE kind <> 'sweep' \
                   AND ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) \
                   AND ($3::text IS NULL OR collection_name = $3) \
                   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
                 ORDER BY created_at DESC, id DESC LIMIT $6",
                model::COLUMNS
            ),
            &[
                &state,
                &kind,
                &filter.collection,
                &before_ts,
                &before_id,
                &limit.fetch(),
            ],
        )
        .await?;
    let mut data = rows.iter().map(model::from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = limit
        .trim(&mut data)
        .then(|| data.last().map(|j| Cursor::new(j.created_at, j.id).encode()))
        .flatten();
    Ok(JobList { data, next_cursor })
}

/// Asks the job to stop: a queued one is cancelled at once, a running one at its next checkpoint.
pub async fn cancel(tx: &Transaction<'_>, id: Uuid) -> Result<Job, ApiError> {
    let job = get(tx, id).await?;
    if job.state.is_finished() {
        return Err(ApiError::JobFinished(format!(
            "job {id} is {} already",
            job.state.as_str()
        )));
    }
    tx.execute(
        "UPDATE jobs SET cancel_requested = true, updated_at = now(), \
           state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
           finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END \
         WHERE id = $1",
        &[&id],
    )
    .await?;
    get(tx, id).await
}

/// Counts of jobs by kind and state, for `/metrics`.
pub async fn counts(pool: &Pool) -> Result<Vec<(String, String, i64)>, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT kind, state, count(*) FROM jobs GROUP BY 1, 2", &[])
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
