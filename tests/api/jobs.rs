//! Jobs through the HTTP API: NDJSON import (progress, abort, skip, cancel, limits), the merge of
//! freshly written vectors, reindex and re-embed swapping while a client searches.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::api::documents::{call, chunk_rows, collection};
use crate::api::helpers::{assert_error, json, spawn_app, spawn_app_with, TestApp};

/// Unit vector `i` of `dim` dimensions, deterministic.
fn vector(i: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|d| {
            let mut z = ((i * dim + d) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn ndjson(range: std::ops::Range<usize>, dim: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in range {
        body.extend(
            serde_json::to_vec(
                &json!({"id": format!("r{i}"), "embedding": vector(i, dim), "metadata": {"tag": i % 100}}),
            )
            .unwrap(),
        );
        body.push(b'\n');
    }
    body
}

async fn import(app: &TestApp, name: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    app.with(
        Method::POST,
        &format!("/v1/collections/{name}/import{query}"),
        &app.owner_key,
    )
    .header("content-type", "application/x-ndjson")
    .body(body)
    .send()
    .await
    .unwrap()
}

/// Polls the job until it ends; returns it and the `done` values seen on the way.
async fn wait_job(app: &TestApp, id: &str) -> (serde_json::Value, Vec<i64>) {
    let start = Instant::now();
    let mut seen = vec![];
    loop {
        let (status, job) = call(app, Method::GET, &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(status, 200, "{job}");
        seen.push(job["progress"]["done"].as_i64().unwrap());
        if ["completed", "failed", "cancelled"].contains(&job["state"].as_str().unwrap()) {
            return (job, seen);
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {id} did not end: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no job of the tenant is queued or running (merges included).
async fn wait_idle(app: &TestApp) {
    let start = Instant::now();
    loop {
        // One listing, one snapshot: two (running, then queued) would miss a job claimed between them.
        let (_, jobs) = call(app, Method::GET, "/v1/jobs?limit=500", None).await;
        let busy: Vec<_> = jobs["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| ["queued", "running", "receiving"].contains(&j["state"].as_str().unwrap_or("")))
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "jobs did not finish: {busy:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn top_hit(app: &TestApp, name: &str, v: &[f32]) -> serde_json::Value {
    let (status, res) = call(
        app,
        Method::POST,
        &format!("/v1/collections/{name}/search"),
        Some(json!({"vector": v, "k": 1, "include": []})),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    res["hits"][0]["document_id"].clone()
}

#[tokio::test]
async fn import_of_50k_vectors_completes_with_progress_and_every_row_searchable() {
    let app = spawn_app().await;
    let (n, dim) = (50_000, 8);
    collection(
        &app,
        json!({"name": "bulk", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await;
    let res = import(&app, "bulk", "", ndjson(0..n, dim)).await;
    assert_eq!(res.status().as_u16(), 202);
    assert!(res
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("/v1/jobs/"));
    let (_, job) = json(res).await;
    assert_eq!(job["kind"], "import");
    assert_eq!(job["progress"]["total"], n);
    let (job, seen) = wait_job(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["progress"]["done"], n);
    assert_eq!(job["progress"]["percent"], 100.0);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );
    assert!(job["progress"]["rows_per_second"].as_f64().unwrap() > 0.0);

    let (_, coll) = call(&app, Method::GET, "/v1/collections/bulk", None).await;
    assert_eq!(coll["document_count"], n, "{coll}");
    assert_eq!(coll["chunk_count"], n);
    assert_eq!(chunk_rows(&app, "bulk").await, n as i64);
    for i in [0, 1, 777, 25_000, n - 1] {
        assert_eq!(top_hit(&app, "bulk", &vector(i, dim)).await, format!("r{i}"));
    }
    // The index was built once, at the end, and search uses it.
    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/bulk/search",
        Some(json!({"vector": vector(3, dim), "k": 5, "explain": true})),
    )
    .await;
    assert!(
        res["explain"]["postgres_plan"]
            .as_str()
            .unwrap()
            .contains("embedding_idx"),
        "{res}"
    );
    // The staging table is gone.
    let client = app.pool.get().await.unwrap();
    let staged: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'import_%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(staged, 0);
    // /metrics counts the job's rows.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("onebase_job_units_total{kind=\"import\"} 50000"),
        "{metrics}"
    );
}

/// pgvector prices an HNSW scan of a small table above reading all of it and sorting, which at
/// 2,000 vectors of 384 dimensions is 4 to 5 times slower: search uses the index all the same.
/// A selective filter is one exact pass over its rows, which are counted.
#[tokio::test]
async fn a_small_indexed_collection_is_searched_through_its_index() {
    let app = spawn_app().await;
    let (n, dim) = (2_000, 384);
    collection(
        &app,
        json!({"name": "small", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await;
    let (job, _) = wait_job(
        &app,
        json(import(&app, "small", "", ndjson(0..n, dim)).await).await.1["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    assert_eq!(job["state"], "completed", "{job}");
    let client = app.pool.get().await.unwrap();
    let table = format!(
        "chunks_{}_main",
        call(&app, Method::GET, "/v1/collections/small", None).await.1["id"]
            .as_str()
            .unwrap()
            .replace('-', "")
    );
    let schema: String = client
        .query_one("SELECT schemaname::text FROM pg_tables WHERE tablename = $1", &[&table])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("ANALYZE {schema}.{table}"))
        .await
        .unwrap();

    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/small/search",
        Some(json!({"vector": vector(5, dim), "k": 5, "explain": true})),
    )
    .await;
    let plan = res["explain"]["postgres_plan"].as_str().unwrap();
    assert!(
        plan.contains("Index Scan (chunks_") && plan.contains("embedding_idx"),
        "{res}"
    );
    assert_eq!(res["hits"][0]["document_id"], "r5");

    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/small/search",
        Some(json!({"vector": vector(5, dim), "k": 5,
        "filter": {"tag": 5}, "explain": true})),
    )
    .await;
    assert_eq!(res["explain"]["plan"], "exact", "{res}");
    assert_eq!(res["explain"]["matching_rows"], 20);
    assert_eq!(res["hits"].as_array().unwrap().len(), 5);
    assert_eq!(res["hits"][0]["document_id"], "r5");
    let distances: Vec<f64> = res["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["scores"]["distance"].as_f64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "nearest first: {distances:?}"
    );
    let (_, none) = call(
        &app,
        Method::POST,
        "/v1/collections/small/search",
        Some(json!({"vector": vector(5, dim), "filter": {"tag": 100},
        "explain": true})),
    )
    .await;
    assert_eq!(none["hits"], json!([]));
    assert_eq!(none["explain"]["matching_rows"], 0);
}

#[tokio::test]
async fn a_bad_line_aborts_the_import_and_writes_nothing_or_is_skipped() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "c", "embedding": {"dimension": 4}})).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/c/documents",
        Some(json!({"documents": [
        {"id": "keep", "embedding": [1, 0, 0, 0]}]})),
    )
    .await;
    assert_eq!(status, 201);
    let mut body = ndjson(0..5, 4);
    body.extend(b"{\"id\": \"bad\", \"embedding\": [1, 2]}\n{\"id\": \"r9\", \"embedding\": [1, 0, 0, 0]}\nnot json\n");

    let refused = assert_error(import(&app, "c", "", body.clone()).await, 400, "invalid_record").await;
    assert!(
        refused["message"].as_str().unwrap().starts_with("line 6 (`bad`)"),
        "{refused}"
    );
    let (_, coll) = call(&app, Method::GET, "/v1/collections/c", None).await;
    assert_eq!(coll["document_count"], 1, "abort writes nothing");
    assert_eq!(chunk_rows(&app, "c").await, 1);
    let (_, jobs) = call(&app, Method::GET, "/v1/jobs?kind=import", None).await;
    assert!(
        jobs["data"].as_array().unwrap().is_empty(),
        "a refused import leaves no job: {jobs}"
    );

    let res = import(&app, "c", "?on_error=skip", body).await;
    assert_eq!(res.status().as_u16(), 202);
    let (_, job) = json(res).await;
    let (job, _) = wait_job(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed");
    assert_eq!(job["error_count"], 2);
    assert_eq!(job["errors"][0]["line"], 6);
    assert_eq!(job["errors"][0]["id"], "bad");
    assert_eq!(job["errors"][1]["line"], 8);
    assert_eq!(job["progress"]["done"], 6);
    let (_, coll) = call(&app, Method::GET, "/v1/collections/c", None).await;
    assert_eq!(coll["document_count"], 7);

    // Other bad inputs.
    assert_error(import(&app, "nope", "", ndjson(0..1, 4)).await, 404, "not_found").await;
    assert_error(import(&app, "c", "", b"\n\n".to_vec()).await, 400, "validation_failed").await;
    assert_error(
        import(&app, "c", "?on_error=maybe", ndjson(0..1, 4)).await,
        400,
        "invalid_request",
    )
    .await;
    let dup = [ndjson(0..2, 4), ndjson(1..2, 4)].concat();
    let err = assert_error(import(&app, "c", "", dup).await, 400, "invalid_record").await;
    assert!(err["message"].as_str().unwrap().contains("line 3"), "{err}");
}

#[tokio::test]
async fn an_import_over_the_limit_is_413_and_leaves_nothing() {
    let app = spawn_app_with(|c| c.import_limit = 10_000).await;
    collection(&app, json!({"name": "c", "embedding": {"dimension": 8}})).await;
    assert_error(import(&app, "c", "", ndjson(0..200, 8)).await, 413, "payload_too_large").await;
    let (_, coll) = call(&app, Method::GET, "/v1/collections/c", None).await;
    assert_eq!(coll["document_count"], 0);
}

#[tokio::test]
async fn cancel_stops_an_import_at_a_checkpoint_and_leaves_consistent_data() {
    let app = spawn_app().await;
    collection(
        &app,
        json!({"name": "c", "embedding": {"dimension": 8}, "index": {"type": "hnsw"}}),
    )
    .await;
    let (_, job) = json(import(&app, "c", "", ndjson(0..40_000, 8)).await).await;
    let id = job["id"].as_str().unwrap().to_string();
    let (status, cancelled) = call(&app, Method::DELETE, &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(status, 202, "{cancelled}");
    assert_eq!(cancelled["cancel_requested"], true);
    let (job, _) = wait_job(&app, &id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    let done = job["progress"]["done"].as_i64().unwrap();
    assert!(done < 40_000, "stopped early: {job}");
    // Whole documents only, counters true, and the index is back.
    let (_, coll) = call(&app, Method::GET, "/v1/collections/c", None).await;
    assert_eq!(coll["document_count"], done);
    assert_eq!(chunk_rows(&app, "c").await, done);
    let (status, res) = call(
        &app,
        Method::POST,
        "/v1/collections/c/search",
        Some(json!({"vector": vector(1, 8), "k": 3, "explain": true})),
    )
    .await;
    assert_eq!(status, 200);
    if done > 0 {
        assert!(
            res["explain"]["postgres_plan"]
                .as_str()
                .unwrap()
                .contains("embedding_idx"),
            "{res}"
        );
    }
    // A finished job cannot be cancelled; an unknown one is 404.
    assert_error(
        app.with(Method::DELETE, &format!("/v1/jobs/{id}"), &app.owner_key)
            .send()
            .await
            .unwrap(),
        409,
        "job_finished",
    )
    .await;
    assert_error(
        app.with(
            Method::DELETE,
            "/v1/jobs/019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
            &app.owner_key,
        )
        .send()
        .await
        .unwrap(),
        404,
        "not_found",
    )
    .await;
    let (_, list) = call(&app, Method::GET, "/v1/jobs?kind=import&state=cancelled", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn incremental_batches_into_an_indexed_collection_are_searchable_during_merges() {
    let app = spawn_app().await;
    let dim = 8;
    collection(
        &app,
        json!({"name": "inc", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await;
    let (_, job) = json(import(&app, "inc", "", ndjson(0..5_000, dim)).await).await;
    wait_job(&app, job["id"].as_str().unwrap()).await;
    for batch in 0..5 {
        let start = 5_000 + batch * 300;
        let docs: Vec<_> = (start..start + 300)
            .map(|i| json!({"id": format!("r{i}"), "embedding": vector(i, dim), "metadata": {"tag": i % 7}}))
            .collect();
        let (status, body) = call(
            &app,
            Method::POST,
            "/v1/collections/inc/documents",
            Some(json!({"documents": docs})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        // Acknowledged rows are found at once, merged or not.
        for i in [start, start + 150, start + 299] {
            assert_eq!(
                top_hit(&app, "inc", &vector(i, dim)).await,
                format!("r{i}"),
                "batch {batch}"
            );
        }
    }
    wait_idle(&app).await;
    let (_, merges) = call(&app, Method::GET, "/v1/jobs?kind=merge", None).await;
    assert!(!merges["data"].as_array().unwrap().is_empty(), "writes queued merges");
    let client = app.pool.get().await.unwrap();
    let table: String = client
        .query_one(
            "SELECT 'tenant_' || replace(tenant_id::text, '-', '') || '.chunks_' || replace(id::text, '-', '') || '_pending' \
             FROM collections WHERE name = 'inc'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pending: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "the merges moved every row into the index's partition");
    let bytes: i64 = client
        .query_one(&format!("SELECT pg_relation_size('{table}')"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bytes, 0,
        "the emptied partition is cut to nothing, not left for every search to scan"
    );
    // ... and their metadata entries out of the GIN pending lists into the index proper, which
    // a filter would otherwise read entry by entry: nothing is left to clean.
    let main = table.replace("_pending", "_main");
    let cleaned: i64 = client
        .query_one(
            &format!(
                "SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), -1)::bigint FROM pg_index i \
                   JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                 WHERE i.indrelid = '{main}'::regclass AND a.amname = 'gin'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cleaned, 0, "GIN pending-list pages left after the merge");
    let (_, filtered) = call(
        &app,
        Method::POST,
        "/v1/collections/inc/search",
        Some(json!({"vector": vector(5_001, dim), "k": 3,
        "filter": {"tag": 5_001 % 7}})),
    )
    .await;
    assert_eq!(filtered["hits"][0]["document_id"], "r5001", "{filtered}");
    assert_eq!(chunk_rows(&app, "inc").await, 6_500);
    for i in [5_000, 5_600, 6_499] {
        assert_eq!(top_hit(&app, "inc", &vector(i, dim)).await, format!("r{i}"));
    }
}

/// Searches in a loop until told to stop; returns (searches, failures).
/// The merge's last step cuts the emptied pending partition off, even when its last batch was
/// small: PostgreSQL's VACUUM then skips the index pass (under 2% of pages with dead pointers)
/// and leaves pages it cannot truncate, which every search would seq-scan. Shown on a scratch
/// table laid out as the bench's partition was: an earlier merge's rows vacuumed off most pages,
/// a small last batch at the end of the file.
#[tokio::test]
async fn a_merged_partition_is_cut_to_nothing_when_its_last_batch_was_small() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    let size = || async {
        client
            .query_one("SELECT pg_relation_size('vacuum_probe')", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // One statement at a time: VACUUM refuses to run inside the implicit transaction of several.
    for statement in [
        "CREATE TABLE vacuum_probe (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)",
        "INSERT INTO vacuum_probe SELECT i, repeat('x', 700) FROM generate_series(1, 20000) i",
        "DELETE FROM vacuum_probe WHERE id <= 19900",
        "VACUUM vacuum_probe",
        "DELETE FROM vacuum_probe",
        "VACUUM vacuum_probe",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    assert!(
        size().await > 1_000_000,
        "a plain VACUUM leaves the emptied pages: {} bytes",
        size().await
    );
    client
        .batch_execute(&onebase::knowledge::maintain::vacuum_emptied("vacuum_probe"))
        .await
        .unwrap();
    assert_eq!(size().await, 0, "the merge's vacuum cuts the emptied table to nothing");
}

fn search_loop(
    app: &TestApp,
    name: &str,
    body: serde_json::Value,
) -> (
    tokio::task::JoinHandle<(u32, Vec<String>)>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (client, url, key, flag) = (
        reqwest::Client::new(),
        app.url(&format!("/v1/collections/{name}/search")),
        app.owner_key.clone(),
        stop.clone(),
    );
    let handle = tokio::spawn(async move {
        let (mut n, mut failures) = (0, vec![]);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let res = client.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or(json!(null));
            if status != 200 || body["hits"].as_array().is_none_or(|h| h.is_empty()) {
                failures.push(format!("{status} {body}"));
            }
            n += 1;
        }
        (n, failures)
    });
    (handle, stop)
}

#[tokio::test]
async fn reindex_swaps_while_a_client_searches() {
    let app = spawn_app().await;
    let dim = 8;
    collection(
        &app,
        json!({"name": "ri", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await;
    let (_, job) = json(import(&app, "ri", "", ndjson(0..20_000, dim)).await).await;
    wait_job(&app, job["id"].as_str().unwrap()).await;
    assert_error(
        app.with(Method::PATCH, "/v1/collections/ri", &app.owner_key)
            .json(&json!({"index": {"type": "none"}}))
            .send()
            .await
            .unwrap(),
        409,
        "reindex_required",
    )
    .await;
    assert_error(
        app.with(Method::PATCH, "/v1/collections/ri", &app.owner_key)
            .json(&json!({"distance": "l2"}))
            .send()
            .await
            .unwrap(),
        409,
        "reindex_required",
    )
    .await;
    assert_error(
        app.with(Method::PATCH, "/v1/collections/ri", &app.owner_key)
            .json(&json!({"embedding": {"model": "x"}}))
            .send()
            .await
            .unwrap(),
        409,
        "reembed_required",
    )
    .await;

    let (searcher, stop) = search_loop(&app, "ri", json!({"vector": vector(5, dim), "k": 3}));
    let (status, job) = call(
        &app,
        Method::POST,
        "/v1/collections/ri/reindex",
        Some(json!({"index": {"type": "hnsw", "m": 8, "ef_construction": 32}, "distance": "l2"})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    // Writes during the reindex are kept.
    let docs: Vec<_> = (20_000..20_200)
        .map(|i| json!({"id": format!("r{i}"), "embedding": vector(i, dim)}))
        .collect();
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/ri/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201);
    let (job, _) = wait_job(&app, job["id"].as_str().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (searches, failures) = searcher.await.unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    assert!(
        failures.is_empty(),
        "{} of {searches} searches failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(searches > 3, "searches ran during the reindex: {searches}");
    let (_, coll) = call(&app, Method::GET, "/v1/collections/ri", None).await;
    assert_eq!(coll["index"], json!({"type": "hnsw", "m": 8, "ef_construction": 32}));
    assert_eq!(coll["distance"], "l2");
    assert_eq!(coll["document_count"], 20_200);
    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/ri/search",
        Some(json!({"vector": vector(20_100, dim), "k": 1, "explain": true})),
    )
    .await;
    assert_eq!(res["hits"][0]["document_id"], "r20100");
    assert!(
        res["explain"]["postgres_plan"]
            .as_str()
            .unwrap()
            .contains("embedding_idx"),
        "{res}"
    );

    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/nope/reindex",
        Some(json!({"index": {"type": "none"}})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/ri/reindex",
        Some(json!({"index": {"type": "hnsw", "m": 1000}})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reembed_swaps_vectors_while_a_client_searches() {
    let app = spawn_app().await;
    // Bring-your-own 8-d vectors with text, re-embedded by the served model.
    collection(&app, json!({"name": "re", "embedding": {"dimension": 8}})).await;
    let texts = [
        "The cat sleeps on the warm windowsill.",
        "Quarterly revenue grew by twelve percent.",
        "Rain is expected over the mountains tonight.",
        "The train to Lyon leaves from platform four.",
    ];
    let docs: Vec<_> = (0..40).map(|i| json!({"id": format!("d{i}"), "text": format!("{} (note {i})", texts[i % 4]), "embedding": vector(i, 8)})).collect();
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/collections/re/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (searcher, stop) = search_loop(&app, "re", json!({"vector": vector(1, 8), "k": 3}));
    let (status, err) = call(
        &app,
        Method::POST,
        "/v1/collections/re/reembed",
        Some(json!({"model": "no-such-model"})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str().unwrap()),
        (400, "validation_failed"),
        "{err}"
    );
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
    let (job, _) = wait_job(&app, job["id"].as_str().unwrap()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (searches, failures) = searcher.await.unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["progress"]["done"], 40);
    // Until the swap the 8-d queries answer; after it they are a clear 400, never a 500.
    assert!(
        failures.iter().all(|f| f.starts_with("400")),
        "{searches} searches, failures: {:?}",
        &failures[..failures.len().min(3)]
    );
    let (_, coll) = call(&app, Method::GET, "/v1/collections/re", None).await;
    assert_eq!(coll["embedding"]["model"], model.as_str());
    assert_eq!(coll["embedding"]["dimension"], 384);
    let (status, res) = call(
        &app,
        Method::POST,
        "/v1/collections/re/search",
        Some(json!({"query": "which platform does the train depart from?", "k": 1, "include": ["text"]})),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert!(
        res["hits"][0]["text"].as_str().unwrap().contains("platform four"),
        "{res}"
    );
    // New writes are text now.
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/re/documents",
        Some(json!({"documents": [{"id": "n", "text": "A new note about cats."}]})),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn text_import_embeds_and_skips_unchanged_documents() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "t"})).await;
    let body: Vec<u8> = (0..150)
        .flat_map(|i| {
            let mut l = serde_json::to_vec(&json!({"id": format!("t{i}"), "document": format!("Note {i}: the boiler in building {} needs a new valve.", i % 9), "metadata": {"b": i % 9}})).unwrap();
            l.push(b'\n');
            l
        })
        .collect();
    let (_, job) = json(import(&app, "t", "", body.clone()).await).await;
    let (job, _) = wait_job(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed", "{job}");
    let (_, coll) = call(&app, Method::GET, "/v1/collections/t", None).await;
    assert_eq!(coll["document_count"], 150);
    assert_eq!(job["progress"]["embedded"], 150, "{job}");
    // The same records again: nothing is embedded. (The job says so; the embedder's counter in
    // /metrics is shared with the tests running beside this one.)
    let (_, job) = json(import(&app, "t", "", body).await).await;
    let (job, _) = wait_job(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed");
    assert_eq!(job["progress"]["done"], 150, "{job}");
    assert_eq!(
        job["progress"]["embedded"], 0,
        "an unchanged import embeds nothing: {job}"
    );
    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/t/search",
        Some(json!({"query": "valve of the boiler in building 4", "k": 3, "filter": {"b": 4}})),
    )
    .await;
    assert_eq!(res["hits"].as_array().unwrap().len(), 3, "{res}");
}
