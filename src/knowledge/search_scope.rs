//! Text and hybrid search over messages and memories: the collections' BM25, weighed by the
//! statistics of the rows searched (a conversation, a user's messages, a memory scope), read
//! with the query.

use deadpool_postgres::Transaction;

use super::fusion::{fuse_hits, HYBRID_DEPTH};
use super::search_model::{Fusion, Scores, SearchMode, TextReason};
use super::search_text::{bind, bm25_ctes, parse_query, phrase_conditions, weights_from};
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::filter::SqlParams;
use crate::state::AppState;

/// The text search configuration of rows outside collections (messages, memories): `simple`,
/// words lowercased and nothing dropped or stemmed, since one tenant's chats can be in any
/// language (BM25's idf gives the words every row has next to no weight). Their stored `tsv`
/// columns are built with it (migrations/V9), and their `$text` filter parses with it.
pub(crate) const SCOPE_LANGUAGE: &str = "simple";

/// Where a search of messages or memories reads: the rows of `from` (aliased `alias`, keyed by
/// `alias.id`, words in `alias.tsv` in [`SCOPE_LANGUAGE`]) that `scope` selects (it adds its
/// conditions' parameters and returns the conditions; it may run more than once), read as
/// `columns`.
pub(crate) struct ScopeRows<'a> {
    pub from: &'a str,
    pub alias: &'a str,
    pub columns: &'a str,
    pub scope: &'a dyn Fn(&mut SqlParams) -> Vec<String>,
}

/// A text search over rows outside collections: the best `fetch` rows, each its `columns` and
/// then its BM25 score, best first, ranked as collections rank ([`bm25_ctes`]); or why none.
///
/// The statistics are the scope's own, read when the query runs, in the query's snapshot: exact
/// under concurrent writes, and what a user's or a conversation's search should weigh words by.
/// A scope is read by its index whole, as the exact vector search over it reads it.
async fn rank_scope(
    tx: &Transaction<'_>,
    rows: &ScopeRows<'_>,
    query: &str,
    fetch: i64,
) -> Result<Result<Vec<tokio_postgres::Row>, TextReason>, ApiError> {
    let ScopeRows {
        from,
        alias,
        columns,
        scope,
    } = rows;
    let mut parsed = parse_query(query);
    let mut params = SqlParams::new();
    let terms = params.push(std::mem::take(&mut parsed.terms));
    let conditions = scope(&mut params).join(" AND ");
    // The same rows as the collections' statistics give: a row per query term with the rows
    // that hold it, and the totals' row.
    let stats = format!(
        "WITH q AS (SELECT lexeme, coalesce(cardinality(positions), 1)::int4 AS count \
                    FROM unnest(to_tsvector('{SCOPE_LANGUAGE}', {terms}::text))), \
         s AS MATERIALIZED (SELECT {alias}.tsv FROM {from} WHERE {conditions}), \
         d AS (SELECT u.lexeme, count(*)::int8 AS chunks \
               FROM s, unnest(ts_filter(setweight(s.tsv, 'A', (SELECT array_agg(lexeme) FROM q)), '{{a}}')) u \
               GROUP BY 1) \
         SELECT q.lexeme, q.count, coalesce(d.chunks, 0)::int8 AS chunks, 0::int8 AS tokens \
         FROM q LEFT JOIN d USING (lexeme) \
         UNION ALL SELECT '', 1, count(*)::int8, coalesce(sum(length(s.tsv)), 0)::int8 FROM s"
    );
    let stats = tx.query(&stats, &params.as_refs()).await?;
    let weighted = match weights_from(&stats)? {
        Ok(weighted) => weighted,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut params = SqlParams::new();
    let mut conditions = scope(&mut params);
    let bound = bind(weighted, alias, &mut params);
    conditions.push(bound.candidates.clone());
    conditions.extend(phrase_conditions(parsed, alias, SCOPE_LANGUAGE, &mut params));
    // `USING (id)`: the answer's columns may name `id` unqualified.
    let sql = format!(
        "WITH {} SELECT {columns}, scored.value FROM {from} JOIN scored USING (id) \
         ORDER BY scored.value DESC, id",
        bm25_ctes(from, alias, &["id"], &conditions, &bound, &params.push(fetch))
    );
    let found = tx.query(&sql, &params.as_refs()).await?;
    Ok(if found.is_empty() {
        Err(TextReason::NoMatch)
    } else {
        Ok(found)
    })
}

/// What a search of messages or memories asks.
pub(crate) struct ScopeSearch<'a> {
    pub mode: SearchMode,
    pub query: &'a str,
    pub fusion: Option<&'a Fusion>,
    pub min_score: Option<f64>,
    pub k: i64,
    /// Hits each side finds at most.
    pub fetch: i64,
}

impl<'a> ScopeSearch<'a> {
    /// Checks `min_score` (a cosine similarity, -1 to 1, in `vector` mode; the final score,
    /// any number, otherwise) and `fusion`. Each side finds `k` hits, or in `hybrid` mode at
    /// least four times `k` and [`HYBRID_DEPTH`], as in collections.
    pub(crate) fn new(
        mode: Option<SearchMode>,
        query: &'a str,
        fusion: Option<&'a Fusion>,
        min_score: Option<f64>,
        k: i64,
    ) -> Result<Self, ApiError> {
        let mode = mode.unwrap_or(SearchMode::Vector);
        if let (SearchMode::Vector, Some(s)) = (mode, min_score) {
            if !(-1.0..=1.0).contains(&s) {
                return Err(ApiError::validation(
                    "min_score",
                    "-1 to 1 (a cosine similarity) in vector mode",
                ));
            }
        }
        if let Some(fusion) = fusion {
            fusion.check()?;
        }
        let fetch = if mode == SearchMode::Hybrid {
            (k * 4).max(i64::from(HYBRID_DEPTH))
        } else {
            k
        };
        Ok(ScopeSearch {
            mode,
            query,
            fusion,
            min_score,
            k,
            fetch,
        })
    }
}

/// The text half of a search of messages or memories, in `tx`: nothing in `vector` mode, else
/// the rows [`rank_scope`] finds (empty, with the reason, when none).
pub(crate) async fn scope_text(
    tx: &Transaction<'_>,
    search: &ScopeSearch<'_>,
    rows: &ScopeRows<'_>,
) -> Result<(Option<Vec<tokio_postgres::Row>>, Option<TextReason>), ApiError> {
    if search.mode == SearchMode::Vector {
        return Ok((None, None));
    }
    Ok(match rank_scope(tx, rows, search.query, search.fetch).await? {
        Ok(found) => (Some(found), None),
        Err(reason) => (Some(vec![]), Some(reason)),
    })
}

/// [`scope_text`] on a connection of its own: hybrid's text half, run beside the model and the
/// vector half. It holds no other connection while it waits for this one, nor this one while it
/// waits for anything else, so hybrid searches cannot exhaust the pool between them.
pub(crate) async fn scope_text_alone(
    state: &AppState,
    tenant: uuid::Uuid,
    search: &ScopeSearch<'_>,
    rows: &ScopeRows<'_>,
) -> Result<(Option<Vec<tokio_postgres::Row>>, Option<TextReason>), ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let found = scope_text(&tx, search, rows).await?;
    tx.commit().await?;
    Ok(found)
}

/// One side's hits of a search of messages or memories: id, score, the row read; best first.
pub(crate) type ScopeHits<T> = Vec<(uuid::Uuid, f64, T)>;

/// A side's rows (`None`: the side did not run) as its hits: each row read by `read` (which
/// gives its id too), its score the `f64` in column `score_at`.
pub(crate) fn scope_hits<T>(
    rows: Option<Vec<tokio_postgres::Row>>,
    score_at: usize,
    read: impl Fn(&tokio_postgres::Row) -> Result<(uuid::Uuid, T), ApiError>,
) -> Result<Option<ScopeHits<T>>, ApiError> {
    rows.map(|rows| {
        rows.iter()
            .map(|row| {
                let (id, hit) = read(row)?;
                Ok((id, row.try_get::<_, f64>(score_at)?, hit))
            })
            .collect()
    })
    .transpose()
}

/// A search of messages or memories, from its two sides' hits (id, score and the row read, best
/// first; the vector side's scores cosine similarities; a side that did not run is `None`):
/// fused, bounded by `min_score` (in `text` and `hybrid` mode: the vector side applies its own)
/// and cut to `k`, each with its final score and both sides' scores.
pub(crate) fn scope_order<T>(
    search: &ScopeSearch<'_>,
    vector: Option<ScopeHits<T>>,
    text: Option<ScopeHits<T>>,
) -> Vec<(T, f64, Scores)> {
    let vector = vector.map(|v| v.into_iter().map(|(id, s, hit)| (id, s, 1.0 - s, hit)).collect());
    let mut ranked = fuse_hits(vector, text, search.fusion);
    if let (true, Some(min)) = (search.mode != SearchMode::Vector, search.min_score) {
        ranked.retain(|(_, score, _)| *score >= min);
    }
    ranked.truncate(usize::try_from(search.k).unwrap_or(0));
    ranked
}
