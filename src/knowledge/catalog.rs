//! What PostgreSQL's catalog says of a collection's segments (see [`super::segments`]).

use super::ddl::Tables;
use super::model::Indexing;
use crate::error::ApiError;
use deadpool_postgres::GenericClient;

/// One attached segment, as the catalog has it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub n: i32,
    /// The planner's estimate (exact after the build that ANALYZEs it), or the statistics'
    /// count of live rows if greater (a segment sealed since).
    pub rows: i64,
    /// Whether its ANN index exists and is valid (a build interrupted by a crash leaves an
    /// invalid one, which no search uses).
    pub indexed: bool,
}

/// The collection's attached segments, by number.
pub async fn list(client: &impl GenericClient, tables: &Tables) -> Result<Vec<Segment>, ApiError> {
    let rows = client
        .query(
            "SELECT c.relname::text, greatest(c.reltuples, pg_stat_get_live_tuples(c.oid), 0)::int8, EXISTS ( \
               SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
               WHERE i.indrelid = c.oid AND i.indisvalid AND ic.relname = c.relname || '_embedding_idx') \
             FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid \
             WHERE h.inhparent = $1::text::regclass",
            &[&tables.chunks],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0)?;
        if let Some(n) = tables.segment_of(&name) {
            out.push(Segment {
                n,
                rows: r.try_get(1)?,
                indexed: r.try_get(2)?,
            });
        }
    }
    out.sort_by_key(|s| s.n);
    Ok(out)
}

/// The collection's [`Indexing`]: the catalog's segments, the chunks of those without a valid
/// ANN index counted.
pub async fn indexing(client: &impl GenericClient, tables: &Tables) -> Result<Indexing, ApiError> {
    let segments = list(client, tables).await?;
    let mut unindexed = 0;
    for seg in segments.iter().filter(|s| !s.indexed) {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", tables.segment(seg.n)), &[])
            .await?
            .try_get(0)?;
        unindexed += n;
    }
    Ok(Indexing {
        segments: segments.len() as i64,
        unindexed_chunks: unindexed,
    })
}

/// Chunks waiting for a graph (in segments without a valid ANN index), from PostgreSQL's
/// statistics: cheap enough for every write to ask, about a second behind.
pub async fn backlog(client: &impl GenericClient, tables: &Tables) -> Result<i64, ApiError> {
    Ok(client
        .query_one(
            "SELECT coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::int8 \
             FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid \
             WHERE h.inhparent = $1::text::regclass AND NOT EXISTS ( \
               SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
               WHERE i.indrelid = c.oid AND i.indisvalid AND ic.relname = c.relname || '_embedding_idx')",
            &[&tables.chunks],
        )
        .await?
        .try_get(0)?)
}
