//! Text search ranks by BM25 over the query's terms OR-ed, with the collection's statistics kept
//! exact by the chunk table's triggers; phrases and exclusions keep their meaning.

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{call, chunk_rows, collection, collection_tables, segments_of, spawn_app, TestApp};

fn ids(res: &serde_json::Value) -> Vec<String> {
    res["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("hits: {res}"))
        .iter()
        .map(|h| h["document_id"].as_str().unwrap().to_string())
        .collect()
}

async fn add(app: &TestApp, name: &str, docs: &[(&str, &str)]) {
    let docs: Vec<_> = docs.iter().map(|(id, text)| json!({"id": id, "text": text})).collect();
    let (status, body) = call(
        app,
        Method::PUT,
        &format!("/v1/collections/{name}/documents"),
        Some(json!({"documents": docs})),
    )
    .await;
    assert!(status == 200 || status == 201, "{body}");
}

async fn text(app: &TestApp, name: &str, query: &str) -> serde_json::Value {
    let (status, body) = call(
        app,
        Method::POST,
        &format!("/v1/collections/{name}/search"),
        Some(json!({"query": query, "mode": "text", "k": 10})),
    )
    .await;
    assert_eq!(status, 200, "{}: {body}", &query[..query.len().min(80)]);
    body
}

#[tokio::test]
async fn a_rare_term_outranks_a_common_one_and_any_term_may_match() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    let common: Vec<(String, String)> = (0..12)
        .map(|i| (format!("r{i}"), format!("The quarterly report number {i} was filed.")))
        .collect();
    let mut docs = vec![("rare", "The zeppelin report was filed on Monday.")];
    docs.extend(common.iter().map(|(id, t)| (id.as_str(), t.as_str())));
    docs.push(("other", "Lunch is served at noon in the canteen."));
    add(&app, "kb", &docs).await;

    let both = text(&app, "kb", "zeppelin report").await;
    let question = text(
        &app,
        "kb",
        "which report mentioned a zeppelin airship over the canteen?",
    )
    .await;

    let both = ids(&both);
    assert_eq!(both[0], "rare", "the chunk with the rare term first: {both:?}");
    assert_eq!(both.len(), 10, "chunks with only `report` match too (OR): {both:?}");
    let question = ids(&question);
    assert_eq!(question[0], "rare", "{question:?}");
    assert!(
        question.contains(&"other".to_string()),
        "`canteen` alone matches: {question:?}"
    );
}

#[tokio::test]
async fn a_term_the_question_repeats_weighs_more() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    // Equally rare terms in chunks of equal length: without the query's counts the two would tie,
    // and the tie goes to the lower document id.
    add(
        &app,
        "kb",
        &[
            ("b-apple", "An apple orchard in the hills."),
            ("a-cherry", "A cherry orchard in the hills."),
        ],
    )
    .await;
    let once = ids(&text(&app, "kb", "apple cherry").await);
    let twice = ids(&text(&app, "kb", "which apple? an apple or a cherry").await);
    assert_eq!(once, ["a-cherry", "b-apple"], "a tie, broken by id");
    assert_eq!(twice, ["b-apple", "a-cherry"], "`apple` written twice counts twice");
}

#[tokio::test]
async fn a_short_chunk_outranks_a_long_one_with_the_term_as_often() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    let filler = "alpha beta gamma delta epsilon zeta theta iota kappa lambda ".repeat(6);
    let long = format!("A whale surfaced. {filler}");
    add(
        &app,
        "kb",
        &[("short", "A whale surfaced near the boat."), ("long", long.as_str())],
    )
    .await;

    let hits = text(&app, "kb", "whale").await;

    assert_eq!(ids(&hits), ["short", "long"], "{hits}");
    let (short, long) = (
        hits["hits"][0]["scores"]["text"].as_f64().unwrap(),
        hits["hits"][1]["scores"]["text"].as_f64().unwrap(),
    );
    assert!(short > long && long > 0.0, "BM25 scores: {short} {long}");
}

#[tokio::test]
async fn phrases_must_match_exclusions_must_not_and_odd_queries_are_no_error() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    add(
        &app,
        "kb",
        &[
            ("ny", "The best pizza in New York is sold by the slice."),
            ("swapped", "York has new pizza places every year."),
            ("rome", "Pizza in Rome is thin and crisp."),
        ],
    )
    .await;

    let phrase = text(&app, "kb", "\"new york\" pizza").await;
    let excluded = text(&app, "kb", "pizza -york").await;
    let unclosed = text(&app, "kb", "pizza \"new york").await;
    let stop_words = text(&app, "kb", "the of and is").await;
    let absent = text(&app, "kb", "submarine").await;
    let many = text(&app, "kb", &"pizza slice thin crisp ".repeat(300)).await;

    assert_eq!(ids(&phrase), ["ny"], "{phrase}");
    assert_eq!(ids(&excluded), ["rome"], "{excluded}");
    assert_eq!(
        ids(&unclosed),
        ["ny"],
        "a quote that never closes runs to the end: {unclosed}"
    );
    assert_eq!(
        ids(&stop_words),
        Vec::<String>::new(),
        "only stop words: nothing to rank by"
    );
    assert_eq!(stop_words["text_reason"], "no_words", "{stop_words}");
    assert_eq!(ids(&absent), Vec::<String>::new());
    assert_eq!(absent["text_reason"], "no_match", "{absent}");
    assert_eq!(ids(&many).len(), 3, "{many}");
    assert_eq!(many["text_reason"], serde_json::Value::Null, "{many}");
}

/// The statistics a text search reads (summed deltas) against a count of the chunks themselves.
async fn statistics_match_the_chunks(app: &TestApp, name: &str) {
    let tables = collection_tables(app, name).await;
    let (chunks, terms) = (tables.chunks, tables.terms);
    let client = app.pool.get().await.unwrap();
    let mismatched: i64 = client
        .query_one(
            &format!(
                "WITH truth AS (
                   SELECT lexeme, count(*) AS chunks, 0::numeric AS tokens FROM {chunks}, unnest(tsv) GROUP BY lexeme
                   UNION ALL SELECT '', count(*), coalesce(sum(length(tsv)), 0) FROM {chunks}),
                 kept AS (
                   SELECT lexeme, sum(chunks) AS chunks, sum(tokens) AS tokens FROM {terms} GROUP BY lexeme
                   HAVING sum(chunks) <> 0 OR lexeme = '')
                 SELECT count(*) FROM truth FULL JOIN kept USING (lexeme)
                 WHERE truth.chunks IS DISTINCT FROM kept.chunks OR truth.tokens IS DISTINCT FROM kept.tokens"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0, "terms whose statistics disagree with the chunks");
    // The delta rows' ids are UUIDv7 (onebase_uuidv7, for PostgreSQL 17 too): version 7, and
    // their first 48 bits this millisecond's clock.
    let (version, skew_ms): (String, f64) = {
        let row = client
            .query_one(
                &format!(
                    "SELECT substr(id::text, 15, 1), \
                       abs(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint \
                           - extract(epoch FROM clock_timestamp()) * 1000)::float8 \
                     FROM {terms} ORDER BY id DESC LIMIT 1"
                ),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(version, "7");
    assert!(
        skew_ms < 600_000.0,
        "the newest delta was written minutes ago at most: {skew_ms} ms"
    );
}

#[tokio::test]
async fn statistics_stay_exact_through_concurrent_writes_replacements_and_deletes() {
    let app = spawn_app().await;
    collection(
        &app,
        json!({"name": "kb", "chunking": {"max_tokens": 32, "overlap_tokens": 0}}),
    )
    .await;

    let writers = (0..6).map(|w| {
        let app = &app;
        async move {
            for round in 0..3 {
                let docs: Vec<(String, String)> = (0..5)
                    .map(|d| {
                        (
                            format!("w{w}-d{d}"),
                            format!("Writer {w} round {round}: the shared harbour report about ships and cargo {d}. ")
                                .repeat(1 + d % 3),
                        )
                    })
                    .collect();
                let refs: Vec<(&str, &str)> = docs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                add(app, "kb", &refs).await;
            }
        }
    });
    futures_util::future::join_all(writers).await;
    statistics_match_the_chunks(&app, "kb").await;

    let (status, _) = call(&app, Method::DELETE, "/v1/collections/kb/documents/w0-d0", None).await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/documents/delete",
        Some(json!({"filter": {"id": {"$in": ["w1-d1", "w2-d2", "w3-d3"]}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    statistics_match_the_chunks(&app, "kb").await;

    let before = text(&app, "kb", "harbour ships").await;
    assert!(
        !ids(&before).contains(&"w0-d0".to_string()),
        "a deleted document is not found"
    );
}

#[tokio::test]
async fn a_collection_from_before_the_statistics_and_segments_is_converted_at_startup() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "old"})).await;
    add(
        &app,
        "old",
        &[
            ("a", "Tide tables for the harbour."),
            ("b", "The harbour master's report."),
            ("d", "Pilots board at the outer harbour."),
        ],
    )
    .await;
    // As a collection written before migration V8 left it (layout 2): chunks partitioned into
    // `main`, with the HNSW index, and `pending`; no statistics table, no triggers.
    let tables = collection_tables(&app, "old").await;
    let (chunks, terms, schema) = (&tables.chunks, &tables.terms, &tables.schema);
    // Triggers and indexes are named after their table, unqualified.
    let bare = chunks.rsplit('.').next().unwrap();
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE {chunks} RENAME TO {bare}_l4;
             DROP INDEX {schema}.{bare}_tsv_idx, {schema}.{bare}_metadata_idx;
             DROP TABLE {terms};
             CREATE TABLE {chunks} (LIKE {schema}.{bare}_l4 INCLUDING DEFAULTS INCLUDING GENERATED,
               pending boolean NOT NULL DEFAULT false) PARTITION BY LIST (pending);
             ALTER TABLE {chunks} DROP COLUMN segment;
             ALTER TABLE {chunks} ADD PRIMARY KEY (tenant_id, document_id, chunk_index, pending);
             CREATE TABLE {chunks}_main PARTITION OF {chunks} FOR VALUES IN (false);
             CREATE TABLE {chunks}_pending PARTITION OF {chunks} FOR VALUES IN (true);
             CREATE INDEX {bare}_tsv_idx ON {chunks} USING gin (tsv);
             CREATE INDEX {bare}_metadata_idx ON {chunks} USING gin (metadata jsonb_path_ops);
             INSERT INTO {chunks} (tenant_id, document_id, chunk_index, text, start_char, end_char, metadata,
                 created_at, updated_at, embedding, pending)
               SELECT tenant_id, document_id, chunk_index, text, start_char, end_char, metadata,
                 created_at, updated_at, embedding, document_id = 'd' FROM {schema}.{bare}_l4;
             DROP TABLE {schema}.{bare}_l4;
             CREATE INDEX {bare}_embedding_idx ON {chunks}_main USING hnsw (embedding vector_cosine_ops);
             UPDATE collections SET layout = 2, open_segment = 1, last_segment = 1 WHERE name = 'old';"
        ))
        .await
        .unwrap();

    onebase::knowledge::upgrade::run(&app.pool)
        .await
        .expect("the upgrade runs");

    let layout: i32 = client
        .query_one("SELECT layout FROM collections WHERE name = 'old'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(layout, 4);
    statistics_match_the_chunks(&app, "old").await;
    // The indexed rows in a sealed segment with its graph, the pending one in the open segment.
    let (open_rows, segments) = segments_of(&app, "old").await;
    assert_eq!(open_rows, 1);
    assert!(segments.iter().any(|s| s.n == 1 && s.indexed), "{segments:?}");
    assert_eq!(chunk_rows(&app, "old").await, 3);
    add(&app, "old", &[("c", "Harbour dues are paid monthly.")]).await;
    statistics_match_the_chunks(&app, "old").await;
    assert_eq!(ids(&text(&app, "old", "tide harbour").await)[0], "a");
}

/// After a re-embed dropped the old vector column, a new segment's columns are laid out unlike
/// the chunk table's, and PostgreSQL leaves the generated `tsv` NULL in the trigger's rows of an
/// insert routed there: the statistics still count what was written.
#[tokio::test]
async fn statistics_count_writes_into_a_segment_created_after_a_reembed() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "re"})).await;
    add(&app, "re", &[("a", "Tide tables for the harbour.")]).await;
    let (_, models) = call(&app, Method::GET, "/v1/models", None).await;
    let model = models["data"][0]["id"].as_str().unwrap().to_string();
    let (status, job) = call(
        &app,
        Method::POST,
        "/v1/collections/re/reembed",
        Some(json!({"model": model})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let start = std::time::Instant::now();
    loop {
        let (_, job) = call(&app, Method::GET, &format!("/v1/jobs/{id}"), None).await;
        if job["state"] == "completed" {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A write, sealed once the writes pause; the next goes to a segment created after the swap.
    add(&app, "re", &[("b", "The harbour master's report.")]).await;
    let start = std::time::Instant::now();
    while segments_of(&app, "re").await.0 > 0 {
        assert!(start.elapsed().as_secs() < 60, "not sealed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    add(&app, "re", &[("c", "Harbour dues are paid monthly.")]).await;
    statistics_match_the_chunks(&app, "re").await;
    assert_eq!(ids(&text(&app, "re", "harbour dues").await)[0], "c");
}
