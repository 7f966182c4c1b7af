//! Search: vector, text and hybrid, with filters, through the HTTP API on the real model.

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{call, collection, spawn_app};

const TOPICS: [(&str, &str); 6] = [
    ("leave", "Employees accrue two days of paid vacation every month."),
    (
        "cafeteria",
        "The canteen serves lunch from noon until two in the afternoon.",
    ),
    (
        "parking",
        "Staff may park their cars in the underground garage on level minus two.",
    ),
    (
        "security",
        "Lock your laptop screen whenever you step away from your desk.",
    ),
    ("payroll", "Salaries are paid on the last working day of each month."),
    (
        "parts",
        "Order replacement pump seals with part number ZQX-4471 from the warehouse.",
    ),
];

fn ids(res: &serde_json::Value) -> Vec<String> {
    res["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn paraphrases_find_their_document_and_hybrid_finds_a_rare_term() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    let docs: Vec<_> = TOPICS
        .iter()
        .map(|(id, text)| json!({"id": id, "text": text, "metadata": {"topic": id}}))
        .collect();
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201);

    let (_, holiday) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "how much time off do I get?", "k": 3})),
    )
    .await;
    let (_, food) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "when can I eat at work", "k": 1, "explain": true})),
    )
    .await;
    let (_, code_text) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "ZQX-4471", "mode": "text"})),
    )
    .await;
    let (_, code_hybrid) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "ZQX-4471", "mode": "hybrid", "k": 3})),
    )
    .await;
    let (_, weighted) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "ZQX-4471", "mode": "hybrid",
        "fusion": {"type": "weighted", "vector_weight": 0.3, "text_weight": 0.7}, "k": 1})),
    )
    .await;
    for fusion in [
        json!({"type": "weighted", "vector_weight": -1, "text_weight": 0.5}),
        json!({"type": "weighted", "vector_weight": 0.5, "text_weight": 1.5}),
        json!({"type": "rrf", "k": 0}),
    ] {
        let (status, err) = call(
            &app,
            Method::POST,
            "/v1/collections/kb/search",
            Some(json!({"query": "ZQX-4471", "mode": "hybrid", "fusion": fusion})),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some("validation_failed")),
            "{fusion}: {err}"
        );
    }
    let (_, filtered) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": "how much time off do I get?",
        "filter": {"topic": {"$in": ["parking", "payroll"]}}, "include": ["document", "scores"]})),
    )
    .await;

    assert_eq!(ids(&holiday)[0], "leave", "{holiday}");
    let top = &holiday["hits"][0];
    assert!(
        top["score"].as_f64().unwrap() > 0.0 && top["score"].as_f64().unwrap() <= 1.0,
        "cosine similarity: {top}"
    );
    let (score, distance) = (
        top["scores"]["vector"].as_f64().unwrap(),
        top["scores"]["distance"].as_f64().unwrap(),
    );
    assert!((score - (1.0 - distance)).abs() < 1e-9, "score = 1 - cosine distance");
    assert_eq!(ids(&food), ["cafeteria"]);
    assert_eq!(food["explain"]["plan"], "ann", "{food}");
    assert_eq!(ids(&code_text), ["parts"], "the exact term is found by text search");
    assert_eq!(ids(&code_hybrid)[0], "parts", "{code_hybrid}");
    assert_eq!(ids(&weighted), ["parts"]);
    assert_eq!(ids(&filtered).len(), 2, "{filtered}");
    assert!(ids(&filtered).iter().all(|id| id == "parking" || id == "payroll"));
    let hit = &filtered["hits"][0];
    assert!(
        hit["document"].is_string() && hit["text"].is_null() && hit["metadata"].is_null(),
        "include decides: {hit}"
    );
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Unit vectors around 50 cluster centres, deterministic (no RNG crate needed).
fn vector(i: usize, dim: usize) -> Vec<f32> {
    let center = i % 50;
    let mut v: Vec<f32> = (0..dim)
        .map(|d| {
            let base = ((center * 31 + d * 17) % 23) as f32 / 23.0 - 0.5;
            let noise = (splitmix((i * dim + d) as u64) % 1000) as f32 / 1000.0 - 0.5;
            base + noise
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

#[tokio::test]
async fn filtered_search_returns_k_rows_exactly_or_through_the_index() {
    let app = spawn_app().await;
    let dim = 16;
    let n = 20_400; // over the exact-scan threshold (20,000) for the unselective filter
    collection(&app, json!({"name": "vecs", "embedding": {"dimension": dim}})).await;
    for batch in (0..n).collect::<Vec<_>>().chunks(100) {
        // the tests' body limit is 64 KiB
        let docs: Vec<_> = batch
            .iter()
            .map(|&i| json!({"id": format!("v{i}"), "embedding": vector(i, dim), "metadata": {"tag": i % 100}}))
            .collect();
        let (status, body) = call(
            &app,
            Method::POST,
            "/v1/collections/vecs/documents",
            Some(json!({"documents": docs})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // The merges have sealed the rows into segments with their graphs.
    let start = std::time::Instant::now();
    loop {
        let (_, coll) = call(&app, Method::GET, "/v1/collections/vecs", None).await;
        if coll["indexing"]["unindexed_chunks"] == 0 {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "not indexed: {coll}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let query = vector(12_345, dim);
    let truth = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut all: Vec<(f32, usize)> = (0..n)
            .filter(|&i| pred(i))
            .map(|i| (cosine_distance(&query, &vector(i, dim)), i))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.iter().take(10).map(|(_, i)| format!("v{i}")).collect()
    };

    let (_, selective) = call(
        &app,
        Method::POST,
        "/v1/collections/vecs/search",
        Some(json!({"vector": query, "k": 10,
        "filter": {"tag": 7}, "explain": true})),
    )
    .await;
    let (_, broad) = call(
        &app,
        Method::POST,
        "/v1/collections/vecs/search",
        Some(json!({"vector": query, "k": 10,
        "filter": {"tag": {"$ne": 7}}, "explain": true, "ef_search": 200})),
    )
    .await;
    let (_, grouped) = call(
        &app,
        Method::POST,
        "/v1/collections/vecs/search",
        Some(json!({"vector": query, "k": 5,
        "group_by": "document", "include": ["embedding"]})),
    )
    .await;

    let mut got = ids(&selective);
    let mut want = truth(&|i| i % 100 == 7);
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "1% filter: k rows, the true nearest: {}",
        selective["explain"]
    );
    assert_eq!(selective["explain"]["plan"], "exact");
    assert_eq!(selective["explain"]["matching_rows"], 204);
    let pg_plan = |r: &serde_json::Value| r["explain"]["postgres_plan"].as_str().unwrap_or_default().to_string();
    assert!(
        !pg_plan(&selective).contains("embedding_idx"),
        "exact: no ANN index: {}",
        pg_plan(&selective)
    );
    assert!(
        pg_plan(&selective).contains("metadata_idx"),
        "the filter's rows come from the metadata index: {}",
        pg_plan(&selective)
    );
    assert_eq!(broad["explain"]["plan"], "ann", "{}", broad["explain"]);
    assert!(
        pg_plan(&broad).contains("Index Scan (chunks_") && pg_plan(&broad).contains("embedding_idx"),
        "{}",
        pg_plan(&broad)
    );
    let found = ids(&broad);
    assert_eq!(found.len(), 10);
    let expected = truth(&|i| i % 100 != 7);
    let recall = found.iter().filter(|id| expected.contains(id)).count();
    assert!(recall >= 9, "recall@10 {recall}/10 through the index");
    assert_eq!(grouped["hits"][0]["embedding"].as_array().unwrap().len(), dim);
}

#[tokio::test]
async fn bad_search_input_is_a_400_naming_what() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "v", "embedding": {"dimension": 2}})).await;
    collection(&app, json!({"name": "t"})).await;

    let cases = [
        ("v", json!({"vector": [1, 0], "k": 0}), "validation_failed", "k"),
        ("v", json!({"vector": [1, 0], "k": 101}), "validation_failed", "k"),
        ("v", json!({"vector": [1, 0, 0]}), "validation_failed", "dimensions"),
        ("v", json!({"vector": [1, 1e39]}), "validation_failed", "float32"),
        (
            "v",
            json!({"query": "text needs a model"}),
            "validation_failed",
            "vector",
        ),
        ("v", json!({}), "validation_failed", "query"),
        (
            "t",
            json!({"query": "x", "filter": {"$or": [{"a": 1}, {"b": {"$near": 2}}]}}),
            "invalid_filter",
            "filter.$or[1].b.$near",
        ),
        (
            "t",
            json!({"query": "x", "include": ["everything"]}),
            "invalid_request",
            "everything",
        ),
        ("t", json!({"mode": "text"}), "validation_failed", "query"),
    ];
    for (coll, body, code, mentions) in cases {
        let res = app
            .with(Method::POST, &format!("/v1/collections/{coll}/search"), &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = crate::api::helpers::assert_error(res, 400, code).await;
        assert!(err["message"].as_str().unwrap().contains(mentions), "{body}: {err}");
    }
}

#[tokio::test]
async fn one_search_over_several_collections_labels_and_merges() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "hr"})).await;
    collection(&app, json!({"name": "ops"})).await;
    call(
        &app,
        Method::POST,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
        {"id": "leave", "text": TOPICS[0].1}, {"id": "payroll", "text": TOPICS[4].1}]})),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/v1/collections/ops/documents",
        Some(json!({"documents": [
        {"id": "parking", "text": TOPICS[2].1}, {"id": "parts", "text": TOPICS[5].1}]})),
    )
    .await;

    let (_, merged) = call(
        &app,
        Method::POST,
        "/v1/search",
        Some(json!({"collections": ["hr", "ops"],
        "query": "where do I leave my car?", "k": 3})),
    )
    .await;
    let (_, again) = call(
        &app,
        Method::POST,
        "/v1/search",
        Some(json!({"collections": ["hr", "ops"],
        "query": "where do I leave my car?", "k": 3})),
    )
    .await;
    let (missing, _) = call(
        &app,
        Method::POST,
        "/v1/search",
        Some(json!({"collections": ["hr", "nope"], "query": "x"})),
    )
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();

    let hits = merged["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{merged}");
    assert_eq!(
        (hits[0]["collection"].as_str(), hits[0]["document_id"].as_str()),
        (Some("ops"), Some("parking"))
    );
    assert!(
        hits.iter().any(|h| h["collection"] == "hr"),
        "both collections contribute: {merged}"
    );
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "merged by score: {scores:?}");
    assert_eq!(again, merged);
    assert_eq!(missing, 404);
    let hits_line = metrics
        .lines()
        .find(|l| l.starts_with("onebase_query_cache_hits_total"))
        .unwrap_or_default();
    let cached: f64 = hits_line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0.0);
    assert!(cached >= 3.0, "the repeated query is embedded once: {hits_line}");
}
