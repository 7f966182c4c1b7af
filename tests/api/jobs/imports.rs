//! Import jobs: progress, searchability, bad lines, the size limit and cancellation.

use super::*;

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
    // The import sealed its rows into segment 1 and built its graph.
    let table = format!(
        "chunks_{}_s1",
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
