//! What the jobs that keep a collection's vectors indexed share (the merge and compaction of
//! segments are [`super::segments`]', reindexing [`super::reindex`]'s).

use deadpool_postgres::{Object, Transaction};
use uuid::Uuid;

use super::collections::{self, Loaded};

use crate::error::ApiError;
use crate::jobs::model::{JobKind, JobState};
use crate::jobs::store::{self, NewJob};
use crate::jobs::JobCtx;
use crate::state::AppState;

/// The job's collection, or `None` if it was deleted (or replaced by a namesake).
pub(super) async fn job_collection(ctx: &JobCtx) -> Result<Option<Loaded>, ApiError> {
    let name = ctx.job.collection_name.clone().unwrap_or_default();
    match collections::load_alone(&ctx.state, ctx.tenant()?, &name).await {
        Ok(l) if Some(l.collection.id) == ctx.job.collection_id => Ok(Some(l)),
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs statements one by one (each its own transaction, as `CONCURRENTLY` requires) on a
/// connection of its own, closed afterwards so that its session settings never reach another
/// request.
pub(super) async fn run_alone(state: &AppState, statements: &[String]) -> Result<(), ApiError> {
    let client = Object::take(state.pool.untimed().get().await?);
    for s in statements {
        client.batch_execute(s).await?;
    }
    Ok(())
}

/// Merges the pending lists of `table`'s GIN indexes into the indexes.
pub(super) fn gin_clean(table: &str) -> String {
    format!(
        "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
         WHERE i.indrelid = '{table}'::regclass AND a.amname = 'gin'"
    )
}

/// The session settings of a job's index build: the configured memory (if any) and parallel
/// maintenance workers for all cores but the leader's.
pub(super) fn index_build_settings(state: &AppState) -> String {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1);
    format!(
        "{} SET max_parallel_maintenance_workers = {workers};",
        state.jobs.index_build_memory
    )
}

/// The job failed because its collection was deleted.
pub(super) fn collection_deleted() -> ApiError {
    ApiError::JobFailed {
        code: "collection_deleted",
        message: "the collection was deleted".into(),
    }
}

/// Queues a collection job after checking that no conflicting one is active.
pub(super) async fn queue_job(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    kind: JobKind,
    params: serde_json::Value,
    total: Option<i64>,
) -> Result<Uuid, ApiError> {
    if let Some((id, other)) = store::active_on(tx, loaded.collection.id, &["import", "reindex", "reembed"]).await? {
        return Err(ApiError::Conflict(format!(
            "the collection has a job in progress ({other} {id}); wait for it or cancel it"
        )));
    }
    let id = store::enqueue(
        tx,
        NewJob {
            tenant: Some(loaded.tenant),
            kind,
            state: JobState::Queued,
            collection: Some((loaded.collection.id, &loaded.collection.name)),
            params,
            total,
        },
    )
    .await?;
    Ok(id)
}
