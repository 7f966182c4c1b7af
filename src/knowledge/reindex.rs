//! Reindexing (a new index type, parameters or distance): each segment's new index built beside
//! its old one, all swapped in one transaction; and the per-segment `_next` indexes a re-embed
//! builds the same way.

use deadpool_postgres::Transaction;
use serde_json::json;
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::ddl;
use super::maintain::{collection_deleted, index_build_settings, job_collection, queue_job, run_alone};
use super::model::{Distance, IndexSpec};
use super::{catalog, segments};
use crate::auth::Principal;
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::{Job, JobKind};
use crate::jobs::store;
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Whether segment `n` carries an ANN index under `to`: every sealed segment does, and the
/// open one too unless the collection seals (an HNSW collection's open segment is scanned
/// exactly until sealed). `from` is the index the collection has now: a reindex from IVFFlat to
/// HNSW builds the open segment's graph too, and seals it at the swap.
pub(super) fn carries_index(n: i32, open: i32, from: &IndexSpec, to: &IndexSpec) -> bool {
    !matches!(to, IndexSpec::None {}) && (n != open || !from.seals() || !to.seals())
}

/// Builds the `_next` index over `column` on every segment that will carry one, concurrently
/// (writes and searches go on), each dropped first if a crash left it half built.
pub(super) async fn build_next(
    state: &AppState,
    loaded: &Loaded,
    column: &str,
    distance: Distance,
    to: &IndexSpec,
) -> Result<(), ApiError> {
    let t = &loaded.tables;
    let list = {
        let client = state.pool.get().await?;
        catalog::list(&*client, t).await?
    };
    for seg in list {
        if !carries_index(seg.n, loaded.open_segment, &loaded.collection.index, to) {
            continue;
        }
        let next = t.next_index_name(seg.n);
        if let Some(create) = ddl::vector_index_named(t, seg.n, &next, column, distance, to, true) {
            run_alone(
                state,
                &[
                    index_build_settings(state),
                    format!("DROP INDEX CONCURRENTLY IF EXISTS {}.{next}", t.schema),
                    create,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Drops the `_next` indexes a cancelled reindex or re-embed built.
pub(super) async fn drop_next(state: &AppState, loaded: &Loaded) -> Result<(), ApiError> {
    let t = &loaded.tables;
    let list = {
        let client = state.pool.get().await?;
        catalog::list(&*client, t).await?
    };
    let statements: Vec<String> = list
        .iter()
        .map(|s| {
            format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                t.schema,
                t.next_index_name(s.n)
            )
        })
        .collect();
    run_alone(state, &statements).await
}

/// In a swap holding the chunk table exclusively: each segment's `_next` index takes its
/// index's name (`drop_old`: the old index is dropped first; a re-embed drops it with its
/// column). False, with nothing changed, if a segment that should carry the new index lacks it
/// (it appeared after the build): the caller builds again.
pub(super) async fn rename_next(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    to: &IndexSpec,
    drop_old: bool,
) -> Result<bool, ApiError> {
    let t = &loaded.tables;
    let mut sql = String::new();
    for seg in catalog::list(tx, t).await? {
        let (old, next) = (t.vector_index_name(seg.n), t.next_index_name(seg.n));
        let has_next: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{}.{next}", t.schema)])
            .await?
            .try_get(0)?;
        let wanted = carries_index(seg.n, loaded.open_segment, &loaded.collection.index, to);
        if wanted && !has_next && loaded.collection.embedding.dimension.is_some() {
            return Ok(false);
        }
        if drop_old {
            sql.push_str(&format!("DROP INDEX IF EXISTS {}.{old};", t.schema));
        }
        sql.push_str(&format!("ALTER INDEX IF EXISTS {}.{next} RENAME TO {old};", t.schema));
    }
    if !sql.is_empty() {
        as_owner(tx, &sql).await?;
    }
    Ok(true)
}

/// Rebuilds each segment's index with a new type, parameters or distance beside the old one,
/// then swaps them all in one transaction.
pub async fn reindex(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let Some(loaded) = job_collection(ctx).await? else {
        return Err(collection_deleted());
    };
    let bad = |what: &str| ApiError::Internal(anyhow::anyhow!("a reindex job with a bad {what}"));
    let index: IndexSpec = serde_json::from_value(ctx.job.params["index"].clone()).map_err(|_| bad("index"))?;
    let distance: Distance = serde_json::from_value(ctx.job.params["distance"].clone()).map_err(|_| bad("distance"))?;
    // Seals and compactions wait while this job is active, so the segments stay those built
    // for; a swap that finds one without its new index builds again.
    let mut built = ctx.job.checkpoint["phase"] == "swap";
    for _attempt in 0..3 {
        if !built {
            if loaded.collection.embedding.dimension.is_some() {
                build_next(&ctx.state, &loaded, "embedding", distance, &index).await?;
            }
            if ctx.cancelled() {
                drop_next(&ctx.state, &loaded).await?;
                return Ok(Outcome::Cancelled);
            }
            let mut client = ctx.state.pool.get().await?;
            let tx = tenant_tx(&mut client, loaded.tenant).await?;
            ctx.checkpoint(&tx, &json!({"phase": "swap"}), 0).await?;
            tx.commit().await?;
        }
        built = false;
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        let fresh = collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await?;
        as_owner(
            &tx,
            &format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", fresh.tables.chunks),
        )
        .await?;
        if !rename_next(&tx, &fresh, &index, true).await? {
            tx.rollback().await?;
            continue;
        }
        if !fresh.collection.index.seals() && index.seals() {
            // The open segment got its graph above: sealed now, a new one takes the writes.
            segments::open_next(&tx, &fresh).await?;
        }
        let config = serde_json::to_value(&index).map_err(anyhow::Error::new)?;
        tx.execute(
            "UPDATE collections SET index_config = $2, distance = $3, updated_at = now() WHERE id = $1",
            &[&fresh.collection.id, &config, &distance.as_str()],
        )
        .await?;
        // Segments sealed or due meanwhile get their index with the new settings.
        store::enqueue_merge(&tx, loaded.tenant, fresh.collection.id, &fresh.collection.name).await?;
        ctx.checkpoint(&tx, &json!({"phase": "done"}), 1).await?;
        tx.commit().await?;
        run_alone(&ctx.state, &[format!("ANALYZE {}", loaded.tables.chunks)]).await?;
        return Ok(Outcome::Completed);
    }
    Err(ApiError::JobFailed {
        code: "reindex_not_converging",
        message: "the collection's segments kept changing during the reindex (3 swap attempts)".into(),
    })
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
