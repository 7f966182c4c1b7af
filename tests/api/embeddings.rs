//! `POST /v1/embeddings` with the real model (all-MiniLM-L6-v2, exported by scripts/bootstrap).

use reqwest::Method;
use serde_json::json as j;

use crate::api::helpers::{assert_error, json, spawn_app, spawn_app_with, TestApp};

/// fastembed-rs's published check for AllMiniLML6V2: the component sums of the normalized,
/// mean-pooled embeddings of these four texts.
const TEXTS: [&str; 4] = [
    "Hello, World!",
    "This is an example passage.",
    "fastembed-rs is licensed under Apache-2.0",
    "Some other short text here blah blah blah",
];
const EXPECTED_SUMS: [f64; 4] = [0.59605527, 0.36542925, -0.16450031, -0.40903988];

/// POSTs `body` to /v1/embeddings with the default tenant's owner key.
async fn embed(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.with(Method::POST, "/v1/embeddings", &app.owner_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_match_fastembeds_published_check_within_1e_3() {
    let app = spawn_app().await;

    let res = embed(&app, j!({"input": TEXTS})).await;

    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for (i, (item, expected)) in data.iter().zip(EXPECTED_SUMS).enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalized, got {norm}");
        let sum: f64 = v.iter().sum();
        assert!(
            (sum - expected).abs() < 1e-3,
            "text {i}: sum {sum}, expected {expected}"
        );
    }
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 20 && tokens < 80, "{tokens}");
    assert_eq!(body["usage"]["total_tokens"], tokens);
}

#[tokio::test]
async fn a_single_string_input_and_the_model_name_are_accepted() {
    let app = spawn_app().await;

    let res = embed(&app, j!({"input": "Hello, World!", "model": "all-MiniLM-L6-v2"})).await;

    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["truncated_inputs"], j!([]));
}

/// OpenAI's SDKs ask for base64 unless told otherwise and decode it as little-endian float32.
#[tokio::test]
async fn base64_encoding_carries_the_same_float32_vectors() {
    use base64::Engine;
    let app = spawn_app().await;
    let post = |format: &str| embed(&app, j!({"input": TEXTS, "encoding_format": format}));

    let (status, floats) = json(post("float").await).await;
    assert_eq!(status, 200, "{floats}");
    let (status, encoded) = json(post("base64").await).await;
    assert_eq!(status, 200, "{encoded}");

    assert_eq!(encoded["usage"], floats["usage"]);
    for (i, (b, f)) in encoded["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(floats["data"].as_array().unwrap())
        .enumerate()
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b["embedding"].as_str().expect("a base64 string"))
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let expected: Vec<f32> = f["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(decoded.len(), expected.len());
        // Two requests may be batched differently with other tests' texts, which can move the
        // last bits of fp32 results.
        for (d, e) in decoded.iter().zip(&expected) {
            assert!((d - e).abs() < 1e-5, "text {i}: {d} vs {e}");
        }
        let sum: f32 = decoded.iter().sum();
        assert!((sum - EXPECTED_SUMS[i] as f32).abs() < 1e-3, "text {i}: sum {sum}");
    }
}

#[tokio::test]
async fn long_inputs_are_truncated_and_the_response_says_so() {
    let app = spawn_app().await;
    let long = "word ".repeat(2000);

    let res = embed(&app, j!({"input": ["short", long]})).await;

    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["truncated"], false);
    assert_eq!(body["data"][1]["truncated"], true);
    assert_eq!(body["truncated_inputs"], j!([1]));
}

#[tokio::test]
async fn bad_embedding_requests_get_clear_errors() {
    let app = spawn_app_with(|c| {
        c.embed.embed_max_inputs = 3;
        c.embed.embed_max_chars = 50;
    })
    .await;
    let post = |body: serde_json::Value| embed(&app, body);

    assert_error(post(j!({"input": ""})).await, 400, "validation_failed").await;
    assert_error(post(j!({"input": []})).await, 400, "validation_failed").await;
    assert_error(post(j!({"input": ["a", ""]})).await, 400, "validation_failed").await;
    assert_error(post(j!({"input": ["a", "b", "c", "d"]})).await, 413, "too_many_inputs").await;
    assert_error(post(j!({"input": "x".repeat(51)})).await, 400, "input_too_long").await;
    assert_error(
        post(j!({"input": "a", "model": "text-embedding-3-small"})).await,
        404,
        "model_not_found",
    )
    .await;
    assert_error(post(j!({"input": 5})).await, 400, "invalid_request").await;
    assert_error(
        post(j!({"input": "a", "encoding_format": "int8"})).await,
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(j!({"input": "a", "dimensions": 512})).await,
        400,
        "validation_failed",
    )
    .await;
    let anonymous = app.post_json("/v1/embeddings", &j!({"input": "a"})).await;
    assert_error(anonymous, 401, "missing_credentials").await;
}

#[tokio::test]
async fn ready_reports_the_embedding_model() {
    let app = spawn_app().await;

    let (_, body) = json(app.get("/ready").await).await;

    assert_eq!(body["embedding"]["name"], "all-MiniLM-L6-v2");
    assert_eq!(body["embedding"]["dims"], 384);
    assert_eq!(body["embedding"]["precision"], "fp32");
    assert_eq!(body["embedding"]["max_length"], 256);
    assert_eq!(body["embedding"]["pooling"], "mean");
    assert_eq!(body["embedding"]["source"], "directory");
}

/// Reads one unlabelled sample from the Prometheus text format.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[tokio::test]
async fn metrics_show_the_embedders_queue_and_work() {
    let app = spawn_app().await;
    let before = app.get("/metrics").await.text().await.unwrap();

    let res = embed(&app, j!({"input": TEXTS})).await;
    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    let after = app.get("/metrics").await.text().await.unwrap();

    // The model is shared with tests running in parallel, so the totals grow by at least this
    // request's share.
    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    assert!(grew("onebase_embed_texts_total") >= 4.0, "{after}");
    let tokens = body["usage"]["total_tokens"].as_f64().unwrap();
    assert!(grew("onebase_embed_tokens_total") >= tokens, "{after}");
    assert!(grew("onebase_embed_model_calls_total") >= 1.0, "{after}");
    assert!(grew("onebase_embed_busy_seconds_total") > 0.0, "{after}");
    assert_eq!(sample(&after, "onebase_embed_queue_capacity"), 1024.0);
    assert!(sample(&after, "onebase_embed_queue_texts") >= 0.0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_never_hangs() {
    let app = spawn_app_with(|c| {
        c.embed.embed_queue = 2;
        c.embed.embed_max_batch = 1;
    })
    .await;

    let requests = (0..40).map(|i| {
        app.with(Method::POST, "/v1/embeddings", &app.owner_key)
            .json(&j!({"input": [format!("first text {i}"), format!("second text {i}")]}))
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;

    let mut ok = 0;
    let mut overloaded = 0;
    for res in responses {
        let res = res.unwrap();
        match res.status().as_u16() {
            200 => ok += 1,
            503 => {
                let retry_after: u32 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry_after >= 1);
                assert_error(res, 503, "overloaded").await;
                overloaded += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "some requests are served");
    assert!(overloaded >= 1, "a burst beyond the queue is shed, got {ok} ok");
}

#[tokio::test]
async fn models_are_listed_in_openais_shape() {
    let app = spawn_app().await;

    let (status, list) = json(
        app.with(Method::GET, "/v1/models", &app.owner_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    let model = &list["data"][0];
    assert_eq!(model["id"], "all-MiniLM-L6-v2");
    assert_eq!(model["object"], "model");
    assert_eq!(model["owned_by"], "onebase");
    assert_eq!(model["dims"], 384);
    let now = chrono::Utc::now().timestamp();
    let created = model["created"].as_i64().unwrap();
    assert!(created <= now && created > now - 600, "{created}");

    let (status, one) = json(
        app.with(Method::GET, "/v1/models/all-MiniLM-L6-v2", &app.owner_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, model);

    let other = app
        .with(Method::GET, "/v1/models/text-embedding-3-small", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(other, 404, "model_not_found").await;
    assert_error(app.get("/v1/models").await, 401, "missing_credentials").await;
}
