//! Jobs through the HTTP API: NDJSON import (progress, abort, skip, cancel, limits), the merge of
//! freshly written vectors, reindex and re-embed swapping while a client searches.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{
    assert_error, call, chunk_rows, collection, collection_tables, json, segments_of, spawn_app, spawn_app_with,
    TestApp,
};

mod imports;
mod maintenance;
mod segments;

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
