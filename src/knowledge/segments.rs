//! A collection's segments (see [`super::ddl::create_tables`]): the merge job seals the open
//! segment and builds its HNSW graph in one pass; the compaction job
//! ([`super::compaction`]) rebuilds sealed segments as one, so that a search visits few.
//!
//! Why: pgvector inserts a row into a large HNSW graph in about 3 ms of a core (300 rows/s on
//! two cores, a million rows in an hour), and builds a graph of the same rows, in memory and in
//! parallel, several times faster (docs/benchmarks.md, sustained ingest). Rows are never moved
//! into a graph one by one any more: a seal only changes which segment takes new rows, and a
//! compaction copies rows into a table nobody reads yet, builds its indexes, and swaps it in for
//! its sources in one short transaction. A search sees every row in exactly one attached
//! segment at every moment, whatever crashes when.

use deadpool_postgres::{Object, Transaction};

use super::catalog::list;
use super::collections::{self, Loaded};
use super::ddl::{self, Tables};
use super::maintain::{gin_clean, index_build_settings, job_collection, run_alone};
use super::segment_plan::{compaction_plan, SEAL_ROWS};
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::JobKind;
use crate::jobs::store;
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Seconds without a write after which a merge seals a smaller open segment.
pub(super) const QUIET_SECS: f64 = 2.0;
/// Chunks waiting for a graph past which writes wait ([`admit`]): every search scans them
/// exactly, so this bounds what a search pays during a sustained ingest.
pub const MAX_BACKLOG: i64 = 4 * SEAL_ROWS;
/// The longest a write waits for the backlog to shrink; past it the write goes in anyway.
const MAX_ADMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Jobs that change the chunk table's columns or indexes: seals and compactions wait for them.
pub(super) const RESHAPING: [&str; 2] = ["reindex", "reembed"];

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

/// A session advisory lock on (`class`, `key`), held by a connection of its own (closed when
/// dropped, which releases it), or `None` if another session holds it: two merges never build
/// one segment's graph, and two compactions of a collection never run, at once (a worker may
/// claim a queued job while another runs).
pub(super) async fn session_lock(
    state: &AppState,
    class: &str,
    key: &str,
) -> Result<Option<deadpool_postgres::ClientWrapper>, ApiError> {
    let client = Object::take(state.pool.untimed().get().await?);
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
            &[&class, &key],
        )
        .await?
        .try_get(0)?;
    Ok(got.then_some(client))
}

pub(super) async fn requeue(state: &AppState, loaded: &Loaded, kind: JobKind, delay: f64) -> Result<(), ApiError> {
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
pub(super) fn new_segment(t: &Tables, n: i32, attach: bool) -> String {
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
            let class = format!("build {}", fresh.collection.id);
            if let Some(lock) = session_lock(state, &class, &seg.n.to_string()).await? {
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
