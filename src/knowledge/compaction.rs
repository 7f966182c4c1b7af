//! The compaction job: sealed segments rebuilt as one and swapped in for them (see
//! [`super::segments`] for the segments, [`super::segment_plan`] for which ones).

use deadpool_postgres::Object;
use serde_json::json;
use tokio_postgres::IsolationLevel;

use super::catalog::list;
use super::collections::{self, Loaded};
use super::ddl::{self, Tables};
use super::maintain::{index_build_settings, job_collection, run_alone};
use super::segment_plan::{compaction_plan, SEAL_ROWS};
use super::segments::{new_segment, requeue, session_lock, QUIET_SECS, RESHAPING};
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::JobKind;
use crate::jobs::store;
use crate::jobs::{JobCtx, Outcome};

/// The compaction job (queued by a merge when one is due): copies the planned segments into
/// a new table in one snapshot, recording each row's version (`xmin`); builds its indexes, which
/// nobody waits for; then, in one short transaction with the chunk table locked, applies what
/// changed in the sources since the copy (deleted or updated rows: their version differs) and
/// swaps the new table in for its sources. A crash before the swap leaves the sources as they
/// were and a table nobody reads, which the next run drops: it starts again from the copy.
pub async fn compact(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let state = &ctx.state;
    let stale: Option<i32> = ctx.job.checkpoint["target"]
        .as_i64()
        .and_then(|t| i32::try_from(t).ok());
    let Some(loaded) = job_collection(ctx).await? else {
        return Ok(Outcome::Completed);
    };
    let Some(_lock) = session_lock(state, JobKind::Compact.as_str(), &loaded.collection.id.to_string()).await? else {
        return Ok(Outcome::Completed);
    };
    if let Some(target) = stale {
        run_alone(state, &[drop_work(&loaded.tables, target)]).await?;
    }
    // Seals first: while rows wait for a graph (every search scans them exactly) the cores go to
    // their builds, and the compaction looks again later. A merge that finds nothing left to
    // build queues it again too.
    let backlog = {
        let client = state.pool.get().await?;
        super::catalog::indexing(&*client, &loaded.tables)
            .await?
            .unindexed_chunks
    };
    let quiet = backlog == 0;
    if backlog >= SEAL_ROWS {
        requeue(state, &loaded, JobKind::Compact, QUIET_SECS).await?;
        return Ok(Outcome::Completed);
    }
    // What to compact, and the new segment's number, given out under the registry row's lock.
    let (sources, target) = {
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        let fresh = collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await?;
        if store::active_on(&tx, loaded.collection.id, &RESHAPING).await?.is_some() {
            return Ok(Outcome::Completed);
        }
        let segments = list(&tx, &fresh.tables).await?;
        let Some(sources) = compaction_plan(&segments, fresh.open_segment, quiet) else {
            return Ok(Outcome::Completed);
        };
        let target = fresh.last_segment + 1;
        tx.execute(
            "UPDATE collections SET last_segment = $2 WHERE id = $1",
            &[&fresh.collection.id, &target],
        )
        .await?;
        let rows: i64 = segments.iter().filter(|s| sources.contains(&s.n)).map(|s| s.rows).sum();
        ctx.checkpoint(&tx, &json!({"phase": "copy", "target": target, "sources": sources}), 0)
            .await?;
        tx.commit().await?;
        store::set_total(&state.pool, ctx.job.id, rows).await?;
        (sources, target)
    };
    let t = &loaded.tables;
    let seg = t.segment(target);
    let versions = versions_table(t, target);
    let columns =
        "tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding";
    let copied: u64 = {
        let mut client = Object::take(state.pool.untimed().get().await?);
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        tx.batch_execute(&new_segment(t, target, false)).await?;
        let copied = tx
            .execute(
                &format!(
                    "INSERT INTO {seg} ({columns}, segment) SELECT {columns}, {target} FROM {chunks} \
                     WHERE segment = ANY($1)",
                    chunks = t.chunks
                ),
                &[&sources],
            )
            .await?;
        tx.execute(
            &format!(
                "CREATE TABLE {versions} AS SELECT document_id, chunk_index, xmin AS x FROM {chunks} \
                 WHERE segment = ANY($1)",
                chunks = t.chunks
            ),
            &[&sources],
        )
        .await?;
        tx.commit().await?;
        copied
    };
    if ctx.cancelled() {
        run_alone(state, &[drop_work(t, target)]).await?;
        return Ok(Outcome::Cancelled);
    }
    // The indexes the parent has, built on the detached table so that attaching it finds them
    // (and its foreign keys, validated) and builds nothing under the swap's lock.
    let bare = t.segment_bare(target);
    let mut build = vec![
        index_build_settings(state),
        format!(
            "ALTER TABLE {seg} ADD CONSTRAINT {bare}_pkey PRIMARY KEY (tenant_id, document_id, chunk_index, segment)"
        ),
        format!("CREATE INDEX {bare}_tsv_idx ON {seg} USING gin (tsv)"),
        format!("CREATE INDEX {bare}_metadata_idx ON {seg} USING gin (metadata jsonb_path_ops)"),
        format!(
            "ALTER TABLE {seg} ADD CONSTRAINT {bare}_doc_fkey FOREIGN KEY (tenant_id, document_id) \
             REFERENCES {docs} (tenant_id, id) ON DELETE CASCADE NOT VALID",
            docs = t.docs
        ),
        format!("ALTER TABLE {seg} VALIDATE CONSTRAINT {bare}_doc_fkey"),
        format!(
            "ALTER TABLE {seg} ADD CONSTRAINT {bare}_tenant_fkey FOREIGN KEY (tenant_id) \
             REFERENCES tenants (id) ON DELETE CASCADE NOT VALID"
        ),
        format!("ALTER TABLE {seg} VALIDATE CONSTRAINT {bare}_tenant_fkey"),
    ];
    if let Some(create) = ddl::vector_index(t, target, loaded.distance(), &loaded.collection.index) {
        build.push(create);
    }
    build.push(format!("CREATE INDEX ON {versions} (document_id, chunk_index)"));
    build.push(format!("ANALYZE {seg}"));
    build.push(format!("ANALYZE {versions}"));
    run_alone(state, &build).await?;
    if ctx.cancelled() {
        run_alone(state, &[drop_work(t, target)]).await?;
        return Ok(Outcome::Cancelled);
    }
    if !swap(ctx, &loaded, &sources, target).await? {
        run_alone(state, &[drop_work(t, target)]).await?;
        return Ok(Outcome::Completed);
    }
    ctx.count(copied);
    // The next tier may be full now.
    let segments = {
        let client = state.pool.get().await?;
        list(&*client, t).await?
    };
    let fresh = collections::load_alone(state, loaded.tenant, &loaded.collection.name).await?;
    let quiet = {
        let client = state.pool.get().await?;
        super::catalog::backlog(&*client, t).await? == 0
    };
    if compaction_plan(&segments, fresh.open_segment, quiet).is_some() {
        requeue(state, &loaded, JobKind::Compact, 0.0).await?;
    }
    Ok(Outcome::Completed)
}

/// The table of row versions a compaction copied.
fn versions_table(t: &Tables, target: i32) -> String {
    format!("{}_versions", t.segment(target))
}

/// Drops what an unfinished compaction into `target` left (nothing reads it: not attached).
fn drop_work(t: &Tables, target: i32) -> String {
    let seg = t.segment(target);
    format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass('{seg}')) THEN \
             DROP TABLE IF EXISTS {seg}; \
           END IF; \
           DROP TABLE IF EXISTS {versions}; \
         END $$",
        versions = versions_table(t, target)
    )
}

/// The swap, in one transaction holding the chunk table (and so every segment) exclusively:
/// the copy takes the changes its sources had since it was made, the sources are detached and
/// dropped, the copy attached. False (nothing changed) if a reindex or re-embed started, whose
/// index or column the copy lacks.
async fn swap(ctx: &JobCtx, loaded: &Loaded, sources: &[i32], target: i32) -> Result<bool, ApiError> {
    let t = &loaded.tables;
    let (chunks, seg, versions) = (&t.chunks, t.segment(target), versions_table(t, target));
    let columns =
        "tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding";
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    // The parent first, and so every partition in order, as the DETACH below needs: a weaker
    // lock first and a stronger one later would deadlock with a search.
    as_owner(&tx, &format!("LOCK TABLE {chunks} IN ACCESS EXCLUSIVE MODE")).await?;
    if store::active_on(&tx, loaded.collection.id, &RESHAPING).await?.is_some() {
        return Ok(false);
    }
    let sources_now: Vec<i32> = list(&tx, t).await?.iter().map(|s| s.n).collect();
    if !sources.iter().all(|s| sources_now.contains(s)) {
        return Ok(false);
    }
    let mut sql = format!(
        "DELETE FROM {seg} n USING {versions} v \
           WHERE n.document_id = v.document_id AND n.chunk_index = v.chunk_index \
             AND NOT EXISTS (SELECT 1 FROM {chunks} c WHERE c.segment IN ({list}) \
               AND c.document_id = v.document_id AND c.chunk_index = v.chunk_index AND c.xmin = v.x); \
         INSERT INTO {seg} ({columns}, segment) SELECT {columns}, {target} FROM {chunks} c \
           WHERE c.segment IN ({list}) AND NOT EXISTS (SELECT 1 FROM {versions} v \
             WHERE v.document_id = c.document_id AND v.chunk_index = c.chunk_index AND v.x = c.xmin);",
        list = sources.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
    );
    for s in sources {
        sql.push_str(&format!(
            "ALTER TABLE {chunks} DETACH PARTITION {old}; DROP TABLE {old};",
            old = t.segment(*s)
        ));
    }
    sql.push_str(&format!(
        "ALTER TABLE {chunks} ATTACH PARTITION {seg} FOR VALUES IN ({target}); DROP TABLE {versions};"
    ));
    as_owner(&tx, &sql).await?;
    ctx.checkpoint(&tx, &json!({"phase": "done"}), ctx.job.done).await?;
    tx.commit().await?;
    tracing::debug!(collection = %loaded.collection.id, ?sources, target, "compacted");
    Ok(true)
}
