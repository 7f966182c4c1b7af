//! The re-embed job: every chunk's text embedded with the collection's new model into a second
//! vector column beside the old one, an index built on it `CONCURRENTLY`, then one swap
//! transaction (reads and writes wait for its few statements) that checks every chunk has its new vector,
//! drops the old column and index, and renames the new ones. Search answers from the old
//! vectors until the swap commits.
//!
//! Chunks written during the job have no new vector yet; they are caught up before the swap,
//! which starts over when it finds one missing.

use serde_json::json;
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::maintain::{collection_deleted, job_collection, queue_job, run_alone};
use super::reindex::{build_next, drop_next, rename_next};
use crate::auth::Principal;
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::{Job, JobKind};
use crate::jobs::store;
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Chunks embedded per transaction.
const BATCH: i64 = 128;
/// Swap attempts before the job gives up (writes kept adding chunks faster than it caught up).
const MAX_SWAPS: u32 = 20;

/// `POST /v1/collections/{name}/reembed`: checks the model and the texts, queues the job.
pub async fn start(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    model: &str,
) -> Result<Job, ApiError> {
    let served = &state.embedder.info().name;
    if model != served {
        return Err(ApiError::validation(
            "model",
            format!("model `{model}` is not served here; this server serves `{served}`"),
        ));
    }
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = collections::load(&tx, tenant, name, true).await?;
    let counts = tx
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE btrim(text) = '') FROM {}",
                loaded.tables.chunks
            ),
            &[],
        )
        .await?;
    let (chunks, empty): (i64, i64) = (counts.try_get(0)?, counts.try_get(1)?);
    if empty > 0 {
        return Err(ApiError::Conflict(format!(
            "{empty} chunks have no text to embed (bring-your-own vectors sent without `text`); delete or re-send them first"
        )));
    }
    let params = json!({"model": model, "from": {"model": loaded.collection.embedding.model, "dimension": loaded.collection.embedding.dimension}});
    let id = queue_job(&tx, &loaded, JobKind::Reembed, params, Some(chunks)).await?;
    crate::audit::record(
        &tx,
        tenant,
        principal,
        crate::audit::Event::new("collection.reembed", "collection", loaded.collection.id)
            .details(json!({"name": name, "job": id, "model": model})),
    )
    .await?;
    let job = store::get(&tx, id).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(job)
}

pub async fn run(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let state = &ctx.state;
    let tenant = ctx.tenant()?;
    let Some(loaded) = job_collection(ctx).await? else {
        return Err(collection_deleted());
    };
    let model = ctx.job.params["model"].as_str().unwrap_or_default().to_string();
    if model != state.embedder.info().name {
        return Err(ApiError::JobFailed {
            code: "model_not_found",
            message: format!("model `{model}` is no longer served here"),
        });
    }
    let dims = i32::try_from(state.embedder.info().dims).unwrap_or(i32::MAX);
    let chunks = loaded.tables.chunks.clone();
    let mut done = ctx.job.done;
    let mut phase = ctx.job.checkpoint["phase"].as_str().unwrap_or("prepare").to_string();
    let mut after: Option<(String, i32)> = serde_json::from_value(ctx.job.checkpoint["after"].clone()).ok();
    if phase == "prepare" {
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        as_owner(
            &tx,
            &format!("ALTER TABLE {chunks} ADD COLUMN IF NOT EXISTS embedding_next vector({dims})"),
        )
        .await?;
        phase = "fill".into();
        ctx.checkpoint(&tx, &json!({"phase": phase}), done).await?;
        tx.commit().await?;
    }
    for _attempt in 0..MAX_SWAPS {
        if phase == "fill" {
            if !fill(ctx, &loaded, &mut after, &mut done).await? {
                drop_next(state, &loaded).await?;
                drop_next_column(state, &loaded).await?;
                return Ok(Outcome::Cancelled);
            }
            phase = "index".into();
            let mut client = state.pool.get().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            ctx.checkpoint(&tx, &json!({"phase": phase}), done).await?;
            tx.commit().await?;
        }
        if phase == "index" {
            build_next(
                state,
                &loaded,
                "embedding_next",
                loaded.distance(),
                &loaded.collection.index,
            )
            .await?;
        }
        if swap(ctx, &loaded, &model, dims, done).await? {
            run_alone(state, &[format!("ANALYZE {chunks}")]).await?;
            return Ok(Outcome::Completed);
        }
        // Chunks written meanwhile: embed them and try again.
        phase = "fill".into();
        after = None;
    }
    Err(ApiError::JobFailed {
        code: "reembed_not_converging",
        message: format!("writes kept adding chunks faster than the job embedded them ({MAX_SWAPS} swap attempts)"),
    })
}

async fn drop_next_column(state: &AppState, loaded: &Loaded) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    as_owner(
        &tx,
        &format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS embedding_next",
            loaded.tables.chunks
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Embeds every chunk without a new vector, in key order from `after`. False on a cancel.
async fn fill(
    ctx: &JobCtx,
    loaded: &Loaded,
    after: &mut Option<(String, i32)>,
    done: &mut i64,
) -> Result<bool, ApiError> {
    let chunks = &loaded.tables.chunks;
    loop {
        if ctx.cancelled() {
            return Ok(false);
        }
        let (doc, idx) = after.clone().unwrap_or_default();
        let rows = {
            let mut client = ctx.state.pool.get().await?;
            let tx = tenant_tx(&mut client, loaded.tenant).await?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT document_id, chunk_index, text FROM {chunks} \
                         WHERE tenant_id = $1 AND (document_id, chunk_index) > ($2, $3) AND embedding_next IS NULL \
                         ORDER BY document_id, chunk_index LIMIT $4"
                    ),
                    &[&loaded.tenant, &doc, &idx, &BATCH],
                )
                .await?;
            tx.commit().await?;
            rows
        };
        if rows.is_empty() {
            return Ok(true);
        }
        let mut ids: Vec<String> = Vec::with_capacity(rows.len());
        let mut indexes: Vec<i32> = Vec::with_capacity(rows.len());
        let mut texts: Vec<String> = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(r.try_get(0)?);
            indexes.push(r.try_get(1)?);
            texts.push(r.try_get(2)?);
        }
        let mut vectors = Vec::with_capacity(texts.len());
        for slice in texts.chunks(ctx.state.embed_limits.max_inputs.max(1)) {
            let embedded = ctx.state.embedder.embed(slice.to_vec()).await?;
            vectors.extend(embedded.vectors.into_iter().map(pgvector::Vector::from));
        }
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        // A chunk whose text changed meanwhile is a new row and keeps a NULL: a later pass.
        tx.execute(
            &format!(
                "UPDATE {chunks} c SET embedding_next = v.e \
                 FROM unnest($1::text[], $2::int[], $3::text[], $4::vector[]) v(d, i, t, e) \
                 WHERE c.document_id = v.d AND c.chunk_index = v.i AND c.text = v.t"
            ),
            &[&ids, &indexes, &texts, &vectors],
        )
        .await?;
        *done += rows.len() as i64;
        let last = (ids[ids.len() - 1].clone(), indexes[indexes.len() - 1]);
        ctx.checkpoint(&tx, &json!({"phase": "fill", "after": last}), *done)
            .await?;
        tx.commit().await?;
        ctx.count(rows.len() as u64);
        *after = Some(last);
    }
}

/// The swap, with writers held off: false (nothing changed) if a chunk still lacks its new vector.
async fn swap(ctx: &JobCtx, loaded: &Loaded, model: &str, dims: i32, done: i64) -> Result<bool, ApiError> {
    let chunks = &loaded.tables.chunks;
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    let fresh = collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await?;
    // ACCESS EXCLUSIVE from the start, on the parent and so on every segment in that order:
    // taking a weaker lock first and the DDL's later would deadlock with a search that holds
    // the parent and waits for a partition.
    as_owner(&tx, &format!("LOCK TABLE {chunks} IN ACCESS EXCLUSIVE MODE")).await?;
    let missing: i64 = tx
        .query_one(
            &format!("SELECT count(*) FROM {chunks} WHERE embedding_next IS NULL"),
            &[],
        )
        .await?
        .try_get(0)?;
    if missing > 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    // The old column takes its indexes with it; each segment's new index takes their names.
    as_owner(
        &tx,
        &format!(
            "ALTER TABLE {chunks} DROP COLUMN embedding; \
             ALTER TABLE {chunks} RENAME COLUMN embedding_next TO embedding"
        ),
    )
    .await?;
    if !rename_next(&tx, &fresh, &fresh.collection.index, false).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE collections SET model = $2, dimension = $3, updated_at = now() WHERE id = $1",
        &[&fresh.collection.id, &model, &dims],
    )
    .await?;
    ctx.checkpoint(&tx, &json!({"phase": "done"}), done).await?;
    tx.commit().await?;
    Ok(true)
}
