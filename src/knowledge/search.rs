//! Search over one collection: vector (ANN or exact), full text, or both fused.
//!
//! A filtered vector search picks its plan per query: one pass reads the matching rows (through
//! the metadata GIN index) with their distances, up to [`EXACT_THRESHOLD`]; under it, their
//! nearest are the answer, the true nearest neighbours; at it, the HNSW / IVFFlat index runs with
//! pgvector 0.8's iterative scan, so that a selective filter still fills `k`. The text half is in
//! `search_text`, the fusion of hybrid search in `fusion`.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use pgvector::Vector;
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::fusion::{fuse, HYBRID_DEPTH};
use super::model::IndexSpec;
use super::query_vector::{query_vector, QueryVector};
use super::search_model::{
    found, Explain, Found, GroupBy, Hit, Include, Scores, SearchMode, SearchRequest, SearchResponse, TextReason,
    CHUNK_COLUMNS,
};
use super::search_text::{text_search, text_statement};
use crate::db::{tenant_scope, Conn};
use crate::error::ApiError;
use crate::filter::{Filter, SqlParams};
use crate::state::AppState;

/// Filters of fewer matching chunks than this are searched exactly: below it an exact pass over
/// the matching chunks is both faster and exact, where the HNSW index with iterative scan loses
/// recall on a selective filter (the 1M figures are in docs/benchmarks.md).
pub const EXACT_THRESHOLD: i64 = 20_000;
pub const DEFAULT_K: u32 = 10;
pub const DEFAULT_EF_SEARCH: u32 = 100;
const MAX_QUERY_CHARS: usize = 8192;

/// Searches one collection. A search that read the collection just before a re-embed swapped
/// its vectors (pgvector then sees query and column differ in dimension) runs once more, and
/// answers from the new state.
pub async fn search(
    state: &AppState,
    tenant: Uuid,
    name: &str,
    req: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    match search_once(state, tenant, name, &req).await {
        Err(ApiError::Internal(err)) if swapped_under(&err) => search_once(state, tenant, name, &req).await,
        other => other,
    }
}

fn swapped_under(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .is_some_and(|db| db.message().starts_with("different vector dimensions"))
}

async fn search_once(
    state: &AppState,
    tenant: Uuid,
    name: &str,
    req: &SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let k = req.k.unwrap_or(DEFAULT_K);
    if !(1..=100).contains(&k) {
        return Err(ApiError::validation("k", "must be 1 to 100"));
    }
    let ef_search = req.ef_search.unwrap_or(DEFAULT_EF_SEARCH);
    if !(1..=1000).contains(&ef_search) {
        return Err(ApiError::validation("ef_search", "must be 1 to 1000"));
    }
    if req
        .query
        .as_ref()
        .is_some_and(|q| q.trim().is_empty() || q.chars().count() > MAX_QUERY_CHARS)
    {
        return Err(ApiError::validation(
            "query",
            format!("1 to {MAX_QUERY_CHARS} characters, not all white space"),
        ));
    }
    if let Some(fusion) = &req.fusion {
        fusion.check()?;
    }
    // A filter that does not parse is refused before the query is embedded.
    let filter = req.filter.as_ref().map(|f| Filter::parse(f, "filter")).transpose()?;
    let mode = req.mode.unwrap_or(SearchMode::Vector);
    if mode != SearchMode::Vector && req.query.is_none() {
        return Err(ApiError::validation("query", "text and hybrid search need `query`"));
    }
    let filter = filter.as_ref();
    let wants_document = req.include.as_ref().is_some_and(|i| i.contains(&Include::Document));
    if mode == SearchMode::Hybrid && !wants_document {
        // The two halves on two connections, at once: the text half runs while the model embeds
        // the query (which it does not need), and PostgreSQL runs the two queries in parallel.
        // Neither half holds its connection while it waits for the other, so hybrid searches
        // cannot exhaust the pool between them. Each half reads its own snapshot, as two
        // statements of one READ COMMITTED transaction would.
        let text = on_read(state, tenant, |client| {
            halves_on(client, tenant, name, req, filter, None, true)
        });
        let vector = async {
            let query_vector = query_vector(state, req).await?;
            on_read(state, tenant, |client| {
                halves_on(client, tenant, name, req, filter, Some(query_vector.clone()), false)
            })
            .await
        };
        let ((_, text), (loaded, vector)) = tokio::try_join!(text, vector)?;
        let halves = Halves {
            text: text.text,
            text_reason: text.text_reason,
            ..vector
        };
        return respond(None, &loaded, req, halves).await;
    }
    // The query's vector comes first, before any transaction: the model never runs inside one.
    let query_vector = match mode {
        SearchMode::Text => None,
        SearchMode::Vector | SearchMode::Hybrid => Some(query_vector(state, req).await?),
    };
    on_read(state, tenant, |mut client| {
        let query_vector = query_vector.clone();
        async move {
            let (tx, loaded) = open(&mut client, tenant, name).await?;
            search_loaded(&tx, loaded, req, filter, query_vector).await
        }
    })
    .await
}

/// Runs `work` on a read connection (a replica's when there are replicas), and once more on the
/// primary when the replica went away under it (it was stopped, say).
async fn on_read<T, F, Fut>(state: &AppState, tenant: Uuid, work: F) -> Result<T, ApiError>
where
    F: Fn(Conn) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let (client, replica) = state.read_conn_at(tenant).await?;
    match (work(client).await, replica) {
        (Err(ApiError::DatabaseUnavailable(why)), Some(i)) => {
            tracing::warn!(replica = i, error = %why, "a search lost its replica; reading from the primary");
            work(state.read_again_on_primary(i).await?).await
        }
        (result, _) => result,
    }
}

/// A read transaction on `client`, tenant-scoped, and the collection. A read: the transaction
/// ends by being dropped, which queues its ROLLBACK on the connection without waiting for the
/// answer (the next request on it runs after it).
async fn open<'c>(client: &'c mut Conn, tenant: Uuid, name: &str) -> Result<(Transaction<'c>, Loaded), ApiError> {
    let tx = client.transaction().await?;
    let scope = tenant_scope(tenant);
    let scoped = async { tx.batch_execute(&scope).await.map_err(ApiError::from) };
    let (_, loaded) = tokio::try_join!(scoped, collections::load(&tx, tenant, name, false))?;
    Ok((tx, loaded))
}

/// One half of a hybrid search (the text half when `text`, else the vector half), on a
/// connection of its own.
async fn halves_on(
    mut client: Conn,
    tenant: Uuid,
    name: &str,
    req: &SearchRequest,
    filter: Option<&Filter>,
    query_vector: Option<QueryVector>,
    text: bool,
) -> Result<(Loaded, Halves), ApiError> {
    let (tx, loaded) = open(&mut client, tenant, name).await?;
    let halves = run_halves(&tx, &loaded, req, filter, query_vector, text).await?;
    Ok((loaded, halves))
}

/// A search of one collection inside `tx` (another plane's snapshot, say), with the query's
/// vector computed already (`None` for a text search) and the filter parsed (`req.filter` is not
/// read). The request is validated by the caller ([`search`] does it; so does the context call).
pub async fn search_in(
    tx: &Transaction<'_>,
    tenant: Uuid,
    name: &str,
    req: &SearchRequest,
    filter: Option<&Filter>,
    query_vector: Option<QueryVector>,
) -> Result<SearchResponse, ApiError> {
    let loaded = collections::load(tx, tenant, name, false).await?;
    search_loaded(tx, loaded, req, filter, query_vector).await
}

async fn search_loaded(
    tx: &Transaction<'_>,
    loaded: Loaded,
    req: &SearchRequest,
    filter: Option<&Filter>,
    query_vector: Option<QueryVector>,
) -> Result<SearchResponse, ApiError> {
    let text = req.mode.unwrap_or(SearchMode::Vector) != SearchMode::Vector;
    let halves = run_halves(tx, &loaded, req, filter, query_vector, text).await?;
    respond(Some(tx), &loaded, req, halves).await
}

/// What a search's two halves found (`None`: the half did not run).
struct Halves {
    vector: Option<Vec<Found>>,
    plan: Option<Plan>,
    text: Option<Vec<Found>>,
    text_reason: Option<TextReason>,
}

/// The request's hits, with their fields (`include`).
fn includes(req: &SearchRequest) -> Vec<Include> {
    req.include
        .clone()
        .unwrap_or_else(|| vec![Include::Text, Include::Metadata, Include::Scores])
}

/// Runs the text half (when `text` and the request has a query) and the vector half (when
/// `query_vector`) in `tx`, both sent in one write.
async fn run_halves(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    req: &SearchRequest,
    filter: Option<&Filter>,
    query_vector: Option<QueryVector>,
    text: bool,
) -> Result<Halves, ApiError> {
    let k = req.k.unwrap_or(DEFAULT_K);
    let ef_search = req.ef_search.unwrap_or(DEFAULT_EF_SEARCH);
    let mode = req.mode.unwrap_or(SearchMode::Vector);
    let mut fetch = if req.group_by.is_some() { k * 4 } else { k };
    if mode == SearchMode::Hybrid {
        fetch = fetch.max(k * 4).max(HYBRID_DEPTH);
    }
    if let Some(query) = &query_vector {
        query.check(loaded)?;
    }
    let query_vector = query_vector.map(|q| q.vector);
    let want_embedding = includes(req).contains(&Include::Embedding);
    // The text query goes first, the vector query's `SET LOCAL`s (which steer the planner to
    // the ANN index) after it, so they never steer the text query; both are sent in one write.
    let text_query = match (text, &req.query) {
        (true, Some(q)) => Some(text_statement(tx, loaded, q, filter, fetch, want_embedding).await?),
        _ => None,
    };
    let text = async {
        match &text_query {
            Some(query) => Ok(Some(text_search(tx, query).await?)),
            None => Ok::<_, ApiError>(None),
        }
    };
    let vector = async {
        match &query_vector {
            Some(v) => {
                let explain = req.explain.unwrap_or(false);
                let query = VectorQuery {
                    vector: v,
                    filter,
                    fetch,
                    ef_search,
                    want_embedding,
                    explain,
                };
                let (hits, plan) = vector_search(tx, loaded, query).await?;
                Ok((Some(hits), Some(plan)))
            }
            None => Ok::<_, ApiError>((None, None)),
        }
    };
    let (text_hits, (vector_hits, plan)) = tokio::try_join!(text, vector)?;
    let text_reason = text_query.as_ref().and_then(|query| {
        query.reason().or_else(|| {
            text_hits
                .as_ref()
                .is_some_and(Vec::is_empty)
                .then_some(TextReason::NoMatch)
        })
    });
    Ok(Halves {
        vector: vector_hits,
        plan,
        text: text_hits,
        text_reason,
    })
}

/// The answer from the halves' hits: fused, bounded, grouped, cut to `k`, with what `include`
/// asks (the documents' texts read in `tx`, which a request for them must give).
async fn respond(
    tx: Option<&Transaction<'_>>,
    loaded: &Loaded,
    req: &SearchRequest,
    halves: Halves,
) -> Result<SearchResponse, ApiError> {
    let k = req.k.unwrap_or(DEFAULT_K);
    let ef_search = req.ef_search.unwrap_or(DEFAULT_EF_SEARCH);
    let include = includes(req);
    let mode = req.mode.unwrap_or(SearchMode::Vector);
    let Halves {
        vector,
        plan,
        text,
        text_reason,
    } = halves;
    let searched_vectors = vector.is_some();
    let mut hits = fuse(loaded.distance(), vector, text, req.fusion.as_ref());
    if let Some(min) = req.min_score {
        hits.retain(|(_, score, _)| *score >= min);
    }
    if req.group_by == Some(GroupBy::Document) {
        let mut seen = std::collections::HashSet::new();
        hits.retain(|(f, _, _)| seen.insert(f.document_id.clone()));
    }
    hits.truncate(k as usize);
    let documents = match tx {
        Some(tx) if include.contains(&Include::Document) => document_texts(tx, loaded, &hits).await?,
        _ => HashMap::new(),
    };
    let explain = req.explain.unwrap_or(false).then(|| {
        let (plan_name, reason, matching, postgres_plan) =
            plan.unwrap_or_else(|| ("text".into(), "full-text search only".into(), None, None));
        Explain {
            plan: if mode == SearchMode::Hybrid {
                format!("hybrid:{plan_name}")
            } else {
                plan_name
            },
            reason,
            matching_rows: matching,
            ef_search: searched_vectors.then_some(ef_search),
            postgres_plan,
        }
    });
    let has = |i: Include| include.contains(&i);
    Ok(SearchResponse {
        hits: hits
            .into_iter()
            .map(|(f, score, scores)| Hit {
                collection: None,
                document: has(Include::Document)
                    .then(|| documents.get(&f.document_id).cloned())
                    .flatten(),
                text: has(Include::Text).then_some(f.text),
                metadata: has(Include::Metadata).then_some(f.metadata),
                embedding: f.embedding.filter(|_| has(Include::Embedding)).map(|v| v.to_vec()),
                scores: has(Include::Scores).then_some(scores),
                document_id: f.document_id,
                chunk_index: f.chunk_index,
                score,
                start_char: f.start_char,
                end_char: f.end_char,
            })
            .collect(),
        explain,
        text_reason,
    })
}

/// Plan name, why, matching rows counted, PostgreSQL's plan (when explaining).
type Plan = (String, String, Option<i64>, Option<String>);

/// One vector query's settings.
struct VectorQuery<'a> {
    vector: &'a [f32],
    filter: Option<&'a Filter>,
    fetch: u32,
    ef_search: u32,
    want_embedding: bool,
    explain: bool,
}

async fn vector_search(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    query: VectorQuery<'_>,
) -> Result<(Vec<Found>, Plan), ApiError> {
    if loaded.collection.embedding.dimension.is_none() {
        return Ok((
            vec![],
            ("exact".into(), "the collection has no vectors yet".into(), None, None),
        ));
    }
    let has_index = loaded.collection.index != IndexSpec::None {};
    if !has_index {
        // A filter's rows through the metadata GIN index (a bitmap scan) where it can serve,
        // rather than a read of the whole table, which the planner picks without statistics.
        let settings = if query.filter.is_some() {
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off; "
        } else {
            ""
        };
        let (rows, postgres_plan) = run(tx, &query, vector_sql(loaded, &query), settings).await?;
        let reason = "the collection has no vector index".to_string();
        return Ok((hits_of(&rows)?, ("exact".into(), reason, None, postgres_plan)));
    }
    let mut matching = None;
    if query.filter.is_some() {
        // One statement scans the matching rows (up to the threshold) through the metadata GIN
        // index, keeping their keys and distances, counts them, and reads the nearest back by
        // primary key: under the threshold that is the exact answer, found in one pass, where
        // counting first and scanning again read every matching heap page twice. No seq scan:
        // the planner picks one when it has no statistics yet.
        let (rows, postgres_plan) = run(
            tx,
            &query,
            filtered_exact_sql(loaded, &query),
            "SET LOCAL enable_seqscan = off; ",
        )
        .await?;
        let count = match rows.first() {
            Some(row) => row.try_get::<_, i64>(8)?,
            None => 0,
        };
        if count < EXACT_THRESHOLD {
            let reason = format!("the filter matches {count} chunks, under {EXACT_THRESHOLD}: an exact scan of them");
            return Ok((hits_of(&rows)?, ("exact".into(), reason, Some(count), postgres_plan)));
        }
        matching = Some(count);
    }
    // The ANN index, with pgvector 0.8's iterative scan so that a filter still fills `k`. No seq
    // or bitmap scan of the indexed partition: pgvector prices an HNSW scan of a small table
    // above a seq scan and sort of it, which reads every vector and is several times slower.
    // The open segment (and one whose graph is being built) has no ANN index and is scanned anyway.
    let mut settings = String::from(
        "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
         SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL ivfflat.iterative_scan = relaxed_order; ",
    );
    if let IndexSpec::Ivfflat { lists } = loaded.collection.index {
        let probes = (f64::from(lists.unwrap_or(IndexSpec::DEFAULT_LISTS)))
            .sqrt()
            .ceil()
            .max(1.0) as u32;
        settings.push_str(&format!("SET LOCAL ivfflat.probes = {probes}; "));
    }
    let (rows, postgres_plan) = run(tx, &query, vector_sql(loaded, &query), &settings).await?;
    let reason = match matching {
        Some(_) => {
            format!("the filter matches {EXACT_THRESHOLD} chunks or more: the vector index, with iterative scan")
        }
        None => "no filter: the vector index".to_string(),
    };
    Ok((hits_of(&rows)?, ("ann".into(), reason, matching, postgres_plan)))
}

/// What both vector queries are built from: the bound query vector (`q`) and filter
/// (`condition`), the distance operator and the embedding column (or NULL).
struct VectorSql {
    params: SqlParams,
    q: String,
    condition: String,
    op: &'static str,
    embedding: &'static str,
}

impl VectorSql {
    fn new(loaded: &Loaded, query: &VectorQuery<'_>) -> Self {
        let mut params = SqlParams::new();
        let q = params.push(Vector::from(query.vector.to_vec()));
        let condition = match query.filter {
            Some(f) => f.to_sql(&CHUNK_COLUMNS, loaded.language(), &mut params),
            None => "true".into(),
        };
        let embedding = if query.want_embedding {
            "c.embedding"
        } else {
            "NULL::vector"
        };
        VectorSql {
            params,
            q,
            condition,
            op: loaded.distance().operator(),
            embedding,
        }
    }
}

/// The vector query: the filter's rows by distance (an ANN index scan, where the settings allow
/// one), with its bind parameters.
fn vector_sql(loaded: &Loaded, query: &VectorQuery<'_>) -> (String, SqlParams) {
    let VectorSql {
        params,
        q,
        condition,
        op,
        embedding,
    } = VectorSql::new(loaded, query);
    let sql = format!(
        "SELECT c.document_id, c.chunk_index, c.text, c.metadata, c.start_char, c.end_char, \
           {embedding} AS embedding, (c.embedding {op} {q})::float8 AS value FROM {chunks} c WHERE {condition} \
         ORDER BY c.embedding {op} {q} LIMIT {fetch}",
        chunks = loaded.tables.chunks,
        fetch = query.fetch,
    );
    (sql, params)
}

/// The filter's rows, at most [`EXACT_THRESHOLD`] of them, as keys and distances; the nearest
/// `fetch` read back whole by primary key, each row with the count (column 8).
fn filtered_exact_sql(loaded: &Loaded, query: &VectorQuery<'_>) -> (String, SqlParams) {
    let VectorSql {
        mut params,
        q,
        condition,
        op,
        embedding,
    } = VectorSql::new(loaded, query);
    let tenant = params.push(loaded.tenant);
    let sql = format!(
        "WITH m AS MATERIALIZED ( \
             SELECT c.document_id, c.chunk_index, c.segment, (c.embedding {op} {q})::float8 AS d \
             FROM {chunks} c WHERE {condition} LIMIT {EXACT_THRESHOLD}), \
           top AS (SELECT * FROM m ORDER BY d, document_id, chunk_index LIMIT {fetch}) \
         SELECT c.document_id, c.chunk_index, c.text, c.metadata, c.start_char, c.end_char, \
           {embedding} AS embedding, top.d AS value, (SELECT count(*) FROM m) \
         FROM top JOIN {chunks} c ON c.tenant_id = {tenant} AND c.document_id = top.document_id \
           AND c.chunk_index = top.chunk_index AND c.segment = top.segment \
         ORDER BY top.d",
        chunks = loaded.tables.chunks,
        fetch = query.fetch,
    );
    (sql, params)
}

/// Runs a vector query after its `SET LOCAL`s, with its plan when explaining. The settings end
/// with the transaction; what follows in it (document texts by primary key) reads fine under
/// them. Without `explain` they go out in one write with the query (tokio-postgres pipelines
/// requests issued together), saving a round trip. A search without the vectors has a fixed
/// text and result type per collection and filter shape (the filter's values are bound): it is
/// prepared once per connection, which saves a round trip (an unprepared query is parsed, then
/// run) and the planning (with the vectors, a re-embed would change the result type under the
/// cache). The settings leave the planner one good plan whatever the filter's values, so the
/// generic plan PostgreSQL may settle on is that plan.
async fn run(
    tx: &Transaction<'_>,
    query: &VectorQuery<'_>,
    (sql, params): (String, SqlParams),
    settings: &str,
) -> Result<(Vec<tokio_postgres::Row>, Option<String>), ApiError> {
    let settings = format!("SET LOCAL hnsw.ef_search = {}; {settings}", query.ef_search);
    let refs = params.as_refs();
    if query.explain {
        tx.batch_execute(&settings).await?;
        let plan: serde_json::Value = tx
            .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &refs)
            .await?
            .try_get(0)?;
        Ok((tx.query(&sql, &refs).await?, Some(describe_plan(&plan[0]["Plan"]))))
    } else if !query.want_embedding {
        let statement = crate::db::pool::prepared(tx, &sql).await?;
        Ok((
            tokio::try_join!(tx.batch_execute(&settings), tx.query(&statement, &refs))?.1,
            None,
        ))
    } else {
        Ok((
            tokio::try_join!(tx.batch_execute(&settings), tx.query(&sql, &refs))?.1,
            None,
        ))
    }
}

/// Hits by distance (relaxed_order may return rows slightly out of order).
fn hits_of(rows: &[tokio_postgres::Row]) -> Result<Vec<Found>, ApiError> {
    let mut hits = rows.iter().map(found).collect::<Result<Vec<_>, _>>()?;
    hits.sort_by(|a, b| a.value.total_cmp(&b.value));
    Ok(hits)
}

/// `Limit > Index Scan (chunks_..._embedding_idx)`: the node types of a JSON plan, outermost
/// first, with the index each scan uses.
fn describe_plan(node: &serde_json::Value) -> String {
    let mut parts = vec![];
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        let kind = node["Node Type"].as_str().unwrap_or("?");
        parts.push(match node["Index Name"].as_str() {
            Some(index) => format!("{kind} ({index})"),
            None => kind.to_string(),
        });
        if let Some(children) = node["Plans"].as_array() {
            stack.extend(children.iter().rev());
        }
    }
    parts.join(" > ")
}

async fn document_texts(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    hits: &[(Found, f64, Scores)],
) -> Result<HashMap<String, String>, ApiError> {
    let ids: Vec<String> = hits.iter().map(|(f, _, _)| f.document_id.clone()).collect();
    let rows = tx
        .query(
            &format!("SELECT id, text FROM {} WHERE id = ANY($1)", loaded.tables.docs),
            &[&ids],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Searches several collections with one request and merges their hits by score. Scores compare
/// across collections of the same distance and mode (a hybrid score is fused within its
/// collection, from scores normalized over its candidates there).
pub async fn search_many(
    state: &AppState,
    tenant: Uuid,
    req: super::search_model::MultiSearchRequest,
) -> Result<super::search_model::MultiSearchResponse, ApiError> {
    let (names, search) = req.split();
    if names.is_empty() || names.len() > super::search_model::MAX_COLLECTIONS {
        return Err(ApiError::validation(
            "collections",
            format!("1 to {} collection names", super::search_model::MAX_COLLECTIONS),
        ));
    }
    let mut unique = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !unique.insert(n.as_str())) {
        return Err(ApiError::validation("collections", format!("`{dup}` is named twice")));
    }
    let k = search.k.unwrap_or(DEFAULT_K) as usize;
    let mut hits = vec![];
    for name in names {
        let found = self::search(state, tenant, &name, search.clone()).await?;
        hits.extend(found.hits.into_iter().map(|mut h| {
            h.collection = Some(name.clone());
            h
        }));
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    Ok(super::search_model::MultiSearchResponse { hits })
}
