//! A collection's segments (see [`super::ddl::create_tables`]): the merge job seals the open
//! segment and builds its HNSW graph in one pass; the compaction job rebuilds a tier of sealed
//! segments as one, so that a search visits few.
//!
//! Why: pgvector inserts a row into a large HNSW graph in about 3 ms of a core (300 rows/s on
//! two cores, a million rows in an hour), and builds a graph of the same rows, in memory and in
//! parallel, several times faster (docs/benchmarks.md, sustained ingest). Rows are never moved
//! into a graph one by one any more: a seal only changes which segment takes new rows, and a
//! compaction copies rows into a table nobody reads yet, builds its indexes, and swaps it in for
//! its sources in one short transaction. A search sees every row in exactly one attached
//! segment at every moment, whatever crashes when.

use deadpool_postgres::{Object, Transaction};
use serde_json::json;
use tokio_postgres::IsolationLevel;

use super::catalog::{list, Segment};
use super::collections::{self, Loaded};
use super::ddl::{self, Tables};
use super::maintain::{gin_clean, index_build_settings, job_collection, run_alone};
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::JobKind;
use crate::jobs::store;
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Rows of the open segment that make a merge seal it at once. Every search scans the open
/// segment exactly (about 1.6 µs a 384-d row: 8 ms for a full one), so it stays small; each
/// seal makes a segment, which compaction folds into bigger ones. 5,000 against 10,000: more
/// rows/s and half the search time during a sustained ingest (docs/benchmarks.md).
pub const SEAL_ROWS: i64 = 5_000;
/// Seconds without a write after which a merge seals a smaller open segment.
const QUIET_SECS: f64 = 2.0;
/// Sealed segments of one size tier compacted into one. A row is rebuilt once per tier, about
/// log4(rows / SEAL_ROWS) times; a search visits at most `FANOUT - 1` segments per tier.
pub const FANOUT: usize = 4;
/// Chunks waiting for a graph past which writes wait ([`admit`]): every search scans them
/// exactly, so this bounds what a search pays during a sustained ingest.
pub const MAX_BACKLOG: i64 = 4 * SEAL_ROWS;
/// The longest a write waits for the backlog to shrink; past it the write goes in anyway.
const MAX_ADMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Jobs that change the chunk table's columns or indexes: seals and compactions wait for them.
const RESHAPING: [&str; 2] = ["reindex", "reembed"];

/// Backpressure for the writes of an HNSW collection: while more than [`MAX_BACKLOG`] chunks
/// wait for a graph, a write waits (before it embeds or opens a transaction, holding nothing)
/// until the merges' builds bring the backlog down, at most [`MAX_ADMIT_WAIT`]. Writes faster
/// than the graphs are built would otherwise pile up rows that every search scans exactly: the
/// write rate becomes the build rate, as in a store that inserts into its graph on the request
/// path, and a search's exact part stays bounded.
pub async fn admit(state: &AppState, loaded: &Loaded) -> Result<(), ApiError> {
    if !loaded.collection.index.seals() || loaded.collection.embedding.dimension.is_none() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    loop {
        let backlog = {
            let client = state.pool.get().await?;
            super::catalog::backlog(&*client, &loaded.tables).await?
        };
        if backlog <= MAX_BACKLOG || start.elapsed() >= MAX_ADMIT_WAIT {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Seals the open segment (if it holds rows) and builds every sealed segment's graph, beside
/// the merges, until none lacks one: what an import does before it says it is done.
pub async fn index_all(ctx: &JobCtx, loaded: &Loaded) -> Result<(), ApiError> {
    let state = &ctx.state;
    let fresh = collections::load_alone(state, loaded.tenant, &loaded.collection.name).await?;
    let open_rows: i64 = state
        .pool
        .get()
        .await?
        .query_one(
            &format!("SELECT count(*) FROM {}", fresh.tables.segment(fresh.open_segment)),
            &[],
        )
        .await?
        .try_get(0)?;
    if open_rows > 0 {
        seal(state, &fresh, fresh.open_segment).await?;
    }
    loop {
        let (_, full) = index_sealed(ctx, loaded).await?;
        if full {
            requeue(state, loaded, JobKind::Compact, 0.0).await?;
            state.jobs.wake();
        }
        let fresh = collections::load_alone(state, loaded.tenant, &loaded.collection.name).await?;
        let segments = list(&*state.pool.get().await?, &fresh.tables).await?;
        if segments.iter().all(|s| s.indexed || s.n == fresh.open_segment) {
            return Ok(());
        }
        // A merge is building the rest.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A session lock on the build of segment `n`'s graph, as [`exclusive`]'s.
async fn building(
    state: &AppState,
    loaded: &Loaded,
    n: i32,
) -> Result<Option<deadpool_postgres::ClientWrapper>, ApiError> {
    let client = Object::take(state.pool.untimed().get().await?);
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1::uuid::text), $2)",
            &[&loaded.collection.id, &n],
        )
        .await?
        .try_get(0)?;
    Ok(got.then_some(client))
}

/// A session lock on one job kind's work on a collection, held by a connection of its own
/// (closed when dropped, which releases it): two compactions of a collection never run at once,
/// even when a worker claims a queued one while another runs.
async fn exclusive(
    state: &AppState,
    kind: JobKind,
    loaded: &Loaded,
) -> Result<Option<deadpool_postgres::ClientWrapper>, ApiError> {
    let client = Object::take(state.pool.untimed().get().await?);
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2::uuid::text))",
            &[&kind.as_str(), &loaded.collection.id],
        )
        .await?
        .try_get(0)?;
    Ok(got.then_some(client))
}

async fn requeue(state: &AppState, loaded: &Loaded, kind: JobKind, delay: f64) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    store::enqueue_collection_job(
        &tx,
        kind,
        loaded.tenant,
        (loaded.collection.id, &loaded.collection.name),
        delay,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The merge job (queued by writes): seals the open segment when it holds [`SEAL_ROWS`] rows or
/// the writes paused, builds the graph of every sealed segment without one (that another merge
/// is not building), queues a compaction when one is due ([`compaction_plan`]), and sums the
/// text statistics' deltas.
pub async fn merge(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let Some(loaded) = job_collection(ctx).await? else {
        return Ok(Outcome::Completed);
    };
    let state = &ctx.state;
    if loaded.collection.index.seals() && loaded.collection.embedding.dimension.is_some() {
        let (rows, quiet): (i64, bool) = {
            let client = state.pool.get().await?;
            let r = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(max(updated_at) < now() - make_interval(secs => $1), true) FROM {}",
                        loaded.tables.segment(loaded.open_segment)
                    ),
                    &[&QUIET_SECS],
                )
                .await?;
            (r.try_get(0)?, r.try_get(1)?)
        };
        if rows >= SEAL_ROWS || (rows > 0 && quiet) {
            seal(state, &loaded, loaded.open_segment).await?;
        } else if rows > 0 {
            // Writes are still arriving: look again when they may have paused.
            requeue(state, &loaded, JobKind::Merge, QUIET_SECS).await?;
        }
        let (built, full) = index_sealed(ctx, &loaded).await?;
        ctx.count(built as u64);
        if full {
            requeue(state, &loaded, JobKind::Compact, 0.0).await?;
            state.jobs.wake();
        }
    }
    // Every write queues a merge, so the text statistics' deltas of the writes since the last
    // one are summed here.
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    tx.execute(&ddl::compact_text_stats(&loaded.tables), &[&loaded.tenant])
        .await?;
    tx.commit().await?;
    Ok(Outcome::Completed)
}

/// Seals the open segment: a new one takes the writes from the next transaction on. The
/// registry row is locked first, as writers lock it before they insert, so every writer either
/// inserted into the old segment before this commits or reads the new one after. The new
/// partition is created apart and attached, which takes no lock that waits for searches.
/// Returns the sealed segment, or `None` if a reindex or re-embed is under way (it indexes
/// every segment itself), the collection went away, or the open segment is no longer
/// `expected` (another merge sealed it meanwhile).
pub async fn seal(state: &AppState, loaded: &Loaded, expected: i32) -> Result<Option<i32>, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    let fresh = match collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await {
        Ok(f) if f.collection.id == loaded.collection.id => f,
        Ok(_) | Err(ApiError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if expected != fresh.open_segment || store::active_on(&tx, loaded.collection.id, &RESHAPING).await?.is_some() {
        return Ok(None);
    }
    let sealed = open_next(&tx, &fresh).await?;
    tx.commit().await?;
    tracing::debug!(collection = %loaded.collection.id, segment = sealed, "sealed");
    Ok(Some(sealed))
}

/// Opens a new segment for the writes, in `tx`, which holds the registry row locked (read into
/// `fresh`). Returns the segment that was open.
pub async fn open_next(tx: &Transaction<'_>, fresh: &Loaded) -> Result<i32, ApiError> {
    let next = fresh.last_segment + 1;
    as_owner(tx, &new_segment(&fresh.tables, next, true)).await?;
    tx.execute(
        "UPDATE collections SET open_segment = $2, last_segment = $2 WHERE id = $1",
        &[&fresh.collection.id, &next],
    )
    .await?;
    Ok(fresh.open_segment)
}

/// A segment's table, created apart (the parent's columns, defaults and generated text column)
/// and, when `attach`, attached: `ATTACH PARTITION` takes a lock on the parent that searches
/// and writes do not wait for, where `CREATE TABLE ... PARTITION OF` waits for every search.
fn new_segment(t: &Tables, n: i32, attach: bool) -> String {
    let seg = t.segment(n);
    let mut sql = format!(
        "CREATE TABLE {seg} (LIKE {chunks} INCLUDING DEFAULTS INCLUDING GENERATED);
         ALTER TABLE {seg} ADD CONSTRAINT {bare}_segment CHECK (segment = {n});
         GRANT SELECT, INSERT, UPDATE, DELETE ON {seg} TO onebase_app;",
        chunks = t.chunks,
        bare = t.segment_bare(n),
    );
    if attach {
        sql.push_str(&format!(
            "ALTER TABLE {chunks} ATTACH PARTITION {seg} FOR VALUES IN ({n});",
            chunks = t.chunks
        ));
    }
    sql
}

/// Builds the graph of every sealed segment that lacks one and that no other merge is building:
/// the one a seal just closed, or one whose build a crash interrupted (its invalid index is
/// dropped first). Concurrently: writes (deletes, updates) and searches go on, and the segment
/// is scanned exactly until its index is valid. Two merges build two segments at once, one
/// process each, on the job workers: a seal does not wait for the build before it. Returns the
/// rows indexed and whether a tier is full (a compaction is due).
async fn index_sealed(ctx: &JobCtx, loaded: &Loaded) -> Result<(i64, bool), ApiError> {
    let state = &ctx.state;
    let mut built = 0;
    loop {
        let (fresh, segments) = {
            let mut client = state.pool.get().await?;
            let tx = tenant_tx(&mut client, loaded.tenant).await?;
            let fresh = match collections::load(&tx, loaded.tenant, &loaded.collection.name, false).await {
                Ok(f) if f.collection.id == loaded.collection.id => f,
                Ok(_) | Err(ApiError::NotFound { .. }) => return Ok((built, false)),
                Err(e) => return Err(e),
            };
            if store::active_on(&tx, loaded.collection.id, &RESHAPING).await?.is_some() {
                return Ok((built, false));
            }
            let segments = list(&tx, &fresh.tables).await?;
            tx.commit().await?;
            (fresh, segments)
        };
        let mut claimed = None;
        for seg in segments.iter().filter(|s| !s.indexed && s.n != fresh.open_segment) {
            if let Some(lock) = building(state, &fresh, seg.n).await? {
                claimed = Some((seg, lock));
                break;
            }
        }
        let Some((todo, _lock)) = claimed else {
            let quiet = {
                let client = state.pool.get().await?;
                super::catalog::backlog(&*client, &fresh.tables).await? == 0
            };
            let full = segments.iter().all(|s| s.indexed || s.n == fresh.open_segment)
                && compaction_plan(&segments, fresh.open_segment, quiet).is_some();
            return Ok((built, full));
        };
        // Built meanwhile by a merge that has just let it go?
        let done = list(&*state.pool.get().await?, &fresh.tables)
            .await?
            .iter()
            .any(|s| s.n == todo.n && s.indexed);
        if !done {
            // A segment that grew past two seals' worth (writes outran the builds: an import)
            // is built with parallel workers too.
            let parallel = todo.rows > 2 * SEAL_ROWS;
            build_segment_index(state, &fresh, todo.n, Build::Concurrently { parallel }).await?;
            built += todo.rows;
        }
    }
}

/// How a segment's index is built.
#[derive(Debug, Clone, Copy)]
pub enum Build {
    /// A seal's build, beside writes and searches: one process unless `parallel` (two merges
    /// build two segments at once).
    Concurrently { parallel: bool },
    /// An IVFFlat import's: the rows' first index, with parallel maintenance workers.
    Locked,
}

/// Builds segment `n`'s ANN index with the configured memory (dropping an invalid one a crash
/// left), merges its GIN pending lists and gathers its statistics.
pub async fn build_segment_index(state: &AppState, loaded: &Loaded, n: i32, how: Build) -> Result<(), ApiError> {
    let t = &loaded.tables;
    let mut statements = vec![index_build_settings(state)];
    let concurrently = matches!(how, Build::Concurrently { .. });
    if let Build::Concurrently { parallel: false } = how {
        statements.push("SET max_parallel_maintenance_workers = 0".into());
    }
    let index = format!("{}.{}", t.schema, t.vector_index_name(n));
    statements.push(if concurrently {
        format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")
    } else {
        format!("DROP INDEX IF EXISTS {index}")
    });
    if let Some(create) = ddl::vector_index_named(
        t,
        n,
        &t.vector_index_name(n),
        "embedding",
        loaded.distance(),
        &loaded.collection.index,
        concurrently,
    ) {
        statements.push(create);
    }
    statements.push(gin_clean(&t.segment(n)));
    statements.push(format!("ANALYZE {}", t.segment(n)));
    run_alone(state, &statements).await
}

/// The sealed, indexed segments to compact into one, if a size tier holds [`FANOUT`] of them:
/// the smallest tier first, its `FANOUT` smallest segments.
///
/// When the collection is `quiet` (no chunk waits for a graph) and no tier is full, the sealed
/// segments but the largest are compacted into one (if there are two or more of them), or the two
/// left into one when the smaller holds a quarter of the larger's rows or more: after a burst of
/// writes, searches visit one or two graphs (each costs about as much as one search of the
/// whole), at the price of rebuilding the recent rows once more, never the largest segment for
/// a small one.
pub fn compaction_plan(segments: &[Segment], open: i32, quiet: bool) -> Option<Vec<i32>> {
    let tier = |rows: i64| {
        let mut t = 0u32;
        let mut bound = SEAL_ROWS.saturating_mul(FANOUT as i64 / 2).max(1);
        while rows >= bound && t < 16 {
            t += 1;
            bound = bound.saturating_mul(FANOUT as i64);
        }
        t
    };
    let mut sealed: Vec<&Segment> = segments.iter().filter(|s| s.n != open && s.indexed).collect();
    sealed.sort_by_key(|s| (tier(s.rows), s.rows, s.n));
    let full = sealed
        .chunk_by(|a, b| tier(a.rows) == tier(b.rows))
        .find(|group| group.len() >= FANOUT)
        .map(|group| group.iter().take(FANOUT).map(|s| s.n).collect());
    if full.is_some() || !quiet {
        return full;
    }
    sealed.sort_by_key(|s| (s.rows, s.n));
    match sealed.as_slice() {
        [small, large] if small.rows.saturating_mul(4) >= large.rows => Some(vec![small.n, large.n]),
        [rest @ .., _largest] if rest.len() >= 2 => Some(rest.iter().map(|s| s.n).collect()),
        _ => None,
    }
}

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
    let Some(_lock) = exclusive(state, JobKind::Compact, &loaded).await? else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(rows: &[i64]) -> Vec<Segment> {
        let mut out: Vec<Segment> = rows
            .iter()
            .enumerate()
            .map(|(i, &rows)| Segment {
                n: i as i32 + 1,
                rows,
                indexed: true,
            })
            .collect();
        out.push(Segment {
            n: rows.len() as i32 + 1,
            rows: 0,
            indexed: false,
        });
        out
    }

    #[test]
    fn a_full_tier_is_compacted_during_writes_and_the_rest_once_they_pause() {
        let open = 6;
        // Four segments of the first tier (under 2 seals' worth): compacted, writes or not.
        let four = segs(&[5_000, 6_000, 7_000, 5_500, 40_000]);
        assert_eq!(compaction_plan(&four, open, false), Some(vec![1, 4, 2, 3]));
        // Three of a tier and one of another: nothing while writes go on.
        let mixed = segs(&[5_000, 6_000, 7_000, 40_000]);
        assert_eq!(compaction_plan(&mixed, 5, false), None);
        // Once they pause, all but the largest.
        assert_eq!(compaction_plan(&mixed, 5, true), Some(vec![1, 2, 3]));
        // Two left: merged only if the smaller is a quarter of the larger or more.
        assert_eq!(compaction_plan(&segs(&[20_000, 70_000]), 3, true), Some(vec![1, 2]));
        assert_eq!(compaction_plan(&segs(&[5_000, 70_000]), 3, true), None);
        assert_eq!(compaction_plan(&segs(&[70_000]), 2, true), None);
        // A segment whose graph is being built is no source.
        let mut building = segs(&[5_000, 6_000, 7_000, 5_500]);
        building[0].indexed = false;
        assert_eq!(compaction_plan(&building, 5, false), None);
    }
}
