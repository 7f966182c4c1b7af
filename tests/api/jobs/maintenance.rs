//! Merges, reindex and re-embed while clients search.

use super::*;

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
    let (open_rows, segments) = segments_of(&app, "inc").await;
    assert_eq!(open_rows, 0, "the merges sealed every row once the writes paused");
    assert!(
        segments.iter().filter(|s| s.rows > 0).all(|s| s.indexed),
        "every sealed segment has its graph: {segments:?}"
    );
    // ... and their metadata entries out of the GIN pending lists into the index proper, which
    // a filter would otherwise read entry by entry: nothing is left to clean.
    let tables = collection_tables(&app, "inc").await;
    let client = app.pool.get().await.unwrap();
    for seg in &segments {
        let cleaned: i64 = client
            .query_one(
                &format!(
                    "SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), -1)::bigint FROM pg_index i \
                       JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                     WHERE i.indrelid = '{}'::regclass AND a.amname = 'gin'",
                    tables.segment(seg.n)
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            cleaned, 0,
            "GIN pending-list pages left after the merge in segment {}",
            seg.n
        );
    }
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
