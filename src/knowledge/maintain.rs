//! Jobs that keep a collection's vectors indexed: the merge of pending chunks into the ANN
//! index, and reindexing (a new index type, parameters or distance) built beside the old index
//! and swapped in atomically.

use deadpool_postgres::{Object, Transaction};
use serde_json::json;
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::ddl;
use super::model::{Distance, IndexSpec};
use crate::auth::Principal;
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::{Job, JobKind, JobState};
use crate::jobs::store::{self, NewJob};
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Chunks moved into the index per transaction (about a millisecond each at a million rows).
const MERGE_BATCH: i64 = 500;

/// The job's collection, or `None` if it was deleted (or replaced by a namesake).
pub(super) async fn job_collection(ctx: &JobCtx) -> Result<Option<Loaded>, ApiError> {
    let name = ctx.job.collection_name.clone().unwrap_or_default();
    match collections::load_alone(&ctx.state, ctx.tenant()?, &name).await {
        Ok(l) if Some(l.collection.id) == ctx.job.collection_id => Ok(Some(l)),
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Moves the collection's pending chunks into its main partition (and so into the ANN index),
/// a batch per transaction: a search sees every row in one partition or the other, always.
/// (`done` restarts from the checkpoint's count after a takeover; the rows left are counted anew.)
pub async fn merge(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let Some(loaded) = job_collection(ctx).await? else {
        return Ok(Outcome::Completed);
    };
    let mut done = ctx.job.done;
    let pending: i64 = {
        let client = ctx.state.pool.get().await?;
        client
            .query_one(&format!("SELECT count(*) FROM {}", loaded.tables.chunks_pending), &[])
            .await?
            .try_get(0)?
    };
    let total = done + pending;
    store::set_total(&ctx.state.pool, ctx.job.id, total).await?;
    // Only what was pending when the job started: rows written meanwhile queued the next merge,
    // which waits for their burst to end.
    while done < total {
        if ctx.cancelled() {
            return Ok(Outcome::Cancelled);
        }
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        let moved = tx
            .execute(
                &format!(
                    "UPDATE {chunks} SET pending = false WHERE pending AND (document_id, chunk_index) IN \
                       (SELECT document_id, chunk_index FROM {pending} LIMIT {MERGE_BATCH} FOR UPDATE SKIP LOCKED)",
                    chunks = loaded.tables.chunks,
                    pending = loaded.tables.chunks_pending,
                ),
                &[],
            )
            .await? as i64;
        done += moved;
        ctx.checkpoint(&tx, &json!({"phase": "merge"}), done).await?;
        tx.commit().await?;
        ctx.count(moved as u64);
        if moved == 0 {
            break;
        }
    }
    // Moving a row out of the pending partition leaves a dead tuple there, and every search
    // scans that partition: its dead pages were read by each search until autovacuum came round
    // and could truncate. Vacuumed now, the emptied partition shrinks to nothing (see
    // [`vacuum_emptied`]).
    // The moved rows' text and metadata entries went into the GIN indexes of `main` through
    // their pending lists (GIN's fast update), which every text search and filter then reads
    // entry by entry until a vacuum merges them. Merged into the indexes now. What both cost
    // before is in docs/benchmarks.md (ingest and merges).
    if done > ctx.job.done {
        run_alone(
            &ctx.state,
            &[
                vacuum_emptied(&loaded.tables.chunks_pending),
                gin_clean(&loaded.tables.chunks_main),
            ],
        )
        .await?;
    }
    // Every write queues a merge (also in collections without pending rows), so the text
    // statistics' deltas of the writes since the last one are summed here.
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    tx.execute(&ddl::compact_text_stats(&loaded.tables), &[&loaded.tenant])
        .await?;
    tx.commit().await?;
    Ok(Outcome::Completed)
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

/// Vacuums a table whose rows have been moved out (a merged pending partition) so that its
/// emptied pages are cut off. `INDEX_CLEANUP ON`: when under 2% of the pages hold dead line
/// pointers, PostgreSQL skips the index pass and leaves them (the "bypass"), and a page with one
/// cannot be truncated. That happened when a merge's last batch was small: the rows of an earlier
/// merge had been vacuumed off most pages, the last batch's few pages kept their pointers, and
/// the whole partition stayed, seq-scanned by every search.
pub fn vacuum_emptied(table: &str) -> String {
    format!("VACUUM (INDEX_CLEANUP ON) {table}")
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

/// Builds `name` on the main partition with `CONCURRENTLY`: writes and searches go on.
pub(super) async fn build_beside(state: &AppState, create: &str, schema: &str, name: &str) -> Result<(), ApiError> {
    run_alone(
        state,
        &[
            index_build_settings(state),
            format!("DROP INDEX CONCURRENTLY IF EXISTS {schema}.{name}"),
            create.to_string(),
        ],
    )
    .await
}

pub(super) fn next_index_name(loaded: &Loaded) -> String {
    format!("{}_next", loaded.tables.vector_index_name())
}

/// Rebuilds the index with a new type, parameters or distance beside the old one, then swaps.
pub async fn reindex(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let Some(loaded) = job_collection(ctx).await? else {
        return Err(collection_deleted());
    };
    let bad = |what: &str| ApiError::Internal(anyhow::anyhow!("a reindex job with a bad {what}"));
    let index: IndexSpec = serde_json::from_value(ctx.job.params["index"].clone()).map_err(|_| bad("index"))?;
    let distance: Distance = serde_json::from_value(ctx.job.params["distance"].clone()).map_err(|_| bad("distance"))?;
    let next = next_index_name(&loaded);
    let schema = &loaded.tables.schema;
    if ctx.job.checkpoint["phase"] != "swap" {
        if loaded.collection.embedding.dimension.is_some() {
            if let Some(create) = ddl::vector_index_named(&loaded.tables, &next, "embedding", distance, &index, true) {
                build_beside(&ctx.state, &create, schema, &next).await?;
            }
        }
        if ctx.cancelled() {
            run_alone(
                &ctx.state,
                &[format!("DROP INDEX CONCURRENTLY IF EXISTS {schema}.{next}")],
            )
            .await?;
            return Ok(Outcome::Cancelled);
        }
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        ctx.checkpoint(&tx, &json!({"phase": "swap"}), 0).await?;
        tx.commit().await?;
    }
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    let fresh = collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await?;
    let old = loaded.tables.vector_index_name();
    as_owner(
        &tx,
        &format!("DROP INDEX IF EXISTS {schema}.{old}; ALTER INDEX IF EXISTS {schema}.{next} RENAME TO {old}"),
    )
    .await?;
    let config = serde_json::to_value(&index).map_err(anyhow::Error::new)?;
    tx.execute(
        "UPDATE collections SET index_config = $2, distance = $3, updated_at = now() WHERE id = $1",
        &[&fresh.collection.id, &config, &distance.as_str()],
    )
    .await?;
    if !matches!(index, IndexSpec::Hnsw { .. }) {
        // Pending rows of a collection that no longer defers its inserts.
        store::enqueue_merge(&tx, loaded.tenant, fresh.collection.id, &fresh.collection.name).await?;
    }
    ctx.checkpoint(&tx, &json!({"phase": "done"}), 1).await?;
    tx.commit().await?;
    run_alone(&ctx.state, &[format!("ANALYZE {}", loaded.tables.chunks)]).await?;
    Ok(Outcome::Completed)
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

/// `POST /v1/collections/{name}/reindex`: queues the reindex job.
pub async fn start_reindex(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    index: IndexSpec,
    distance: Option<Distance>,
) -> Result<Job, ApiError> {
    let index = index.resolved()?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, true).await?;
    let distance = distance.unwrap_or(loaded.collection.distance);
    let params = json!({"index": index, "distance": distance, "from": {"index": loaded.collection.index, "distance": loaded.collection.distance}});
    let id = queue_job(&tx, &loaded, JobKind::Reindex, params, Some(1)).await?;
    crate::audit::record(
        &tx,
        tenant,
        principal,
        crate::audit::Event::new("collection.reindex", "collection", loaded.collection.id)
            .details(json!({"name": name, "job": id, "index": index, "distance": distance})),
    )
    .await?;
    let job = store::get(&tx, id).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(job)
}
