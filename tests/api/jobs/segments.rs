//! Segments: the merge seals the open segment, sealed segments are compacted into one, and what
//! changed in the sources while the compaction copied them is in the result.

use super::*;

/// Writes `ids` as bring-your-own documents (vector `i` each, metadata `tag` = i % 7), 300 a
/// request (the tests' body limit).
async fn write(app: &TestApp, name: &str, ids: std::ops::Range<usize>, dim: usize) {
    let ids: Vec<usize> = ids.collect();
    for part in ids.chunks(300) {
        let docs: Vec<_> = part
            .iter()
            .map(|i| json!({"id": format!("r{i}"), "embedding": vector(*i, dim), "metadata": {"tag": i % 7}}))
            .collect();
        let (status, body) = call(
            app,
            Method::POST,
            &format!("/v1/collections/{name}/documents"),
            Some(json!({"documents": docs})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Waits until a merge has sealed the open segment and indexed what it sealed.
async fn sealed(app: &TestApp, name: &str) {
    let start = Instant::now();
    loop {
        let (open, segments) = segments_of(app, name).await;
        if open == 0 && segments.iter().filter(|s| s.indexed).count() + 1 >= segments.len() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not sealed: {segments:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn segments_are_compacted_into_one_keeping_the_writes_made_during_the_copy() {
    let app = spawn_app().await;
    let dim = 8;
    collection(
        &app,
        json!({"name": "tier", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await;
    // A burst, sealed into a segment once the writes pause.
    write(&app, "tier", 0..600, dim).await;
    sealed(&app, "tier").await;
    let (_, segments) = segments_of(&app, "tier").await;
    assert_eq!(segments.iter().filter(|s| s.indexed).count(), 1, "{segments:?}");

    // A reader holds the chunk table, so the compaction that the second burst's seal queues (two
    // segments of comparable size once the writes pause) copies and builds, then waits to swap.
    // Meanwhile this transaction deletes a document of a source and changes another's metadata:
    // the swap must apply both to the copy.
    let tables = collection_tables(&app, "tier").await;
    let (chunks, docs) = (&tables.chunks, &tables.docs);
    let mut holder = app.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE {chunks} IN ACCESS SHARE MODE"))
        .await
        .unwrap();
    write(&app, "tier", 600..1_200, dim).await;
    let watcher = app.pool.get().await.unwrap();
    let start = Instant::now();
    loop {
        let waiting: i64 = watcher
            .query_one(
                &format!(
                    "SELECT count(*) FROM pg_locks WHERE relation = '{chunks}'::regclass \
                     AND mode = 'AccessExclusiveLock' AND NOT granted"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no compaction reached its swap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The copy is made (its versions table exists) and is waiting for the swap.
    tx.batch_execute(&format!(
        "DELETE FROM {docs} WHERE id = 'r5';
         UPDATE {docs} SET metadata = '{{\"tag\": \"changed\"}}' WHERE id = 'r7';
         UPDATE {chunks} SET metadata = '{{\"tag\": \"changed\"}}' WHERE document_id = 'r7';
         UPDATE collections SET document_count = document_count - 1, chunk_count = chunk_count - 1 WHERE name = 'tier';"
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    drop(holder);
    wait_idle(&app).await;

    let (open, segments) = segments_of(&app, "tier").await;
    assert_eq!(open, 0);
    let sealed: Vec<_> = segments.iter().filter(|s| s.indexed).collect();
    assert_eq!(sealed.len(), 1, "two segments compacted into one: {segments:?}");
    let (_, jobs) = call(&app, Method::GET, "/v1/jobs?kind=compact", None).await;
    assert!(
        jobs["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["state"] == "completed"),
        "{jobs}"
    );
    assert_eq!(chunk_rows(&app, "tier").await, 1_199);
    let client = app.pool.get().await.unwrap();
    let distinct: i64 = client
        .query_one(&format!("SELECT count(DISTINCT document_id) FROM {chunks}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 1_199, "no row doubled");
    assert_ne!(
        top_hit(&app, "tier", &vector(5, dim)).await,
        "r5",
        "the deleted row stays deleted"
    );
    let (_, changed) = call(
        &app,
        Method::POST,
        "/v1/collections/tier/search",
        Some(json!({"vector": vector(7, dim), "k": 5, "filter": {"tag": "changed"}})),
    )
    .await;
    assert_eq!(changed["hits"].as_array().unwrap().len(), 1, "{changed}");
    assert_eq!(changed["hits"][0]["document_id"], "r7");
    // Every row is found through the one graph.
    for i in [0, 299, 300, 650, 899, 900, 1_199] {
        assert_eq!(top_hit(&app, "tier", &vector(i, dim)).await, format!("r{i}"));
    }
    let (_, res) = call(
        &app,
        Method::POST,
        "/v1/collections/tier/search",
        Some(json!({"vector": vector(3, dim), "k": 3, "explain": true})),
    )
    .await;
    let plan = res["explain"]["postgres_plan"].as_str().unwrap();
    assert!(plan.contains("_embedding_idx"), "{plan}");
}
