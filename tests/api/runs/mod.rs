//! Runs, steps, artifacts, LLM calls, run stats and usage through the HTTP API: the lifecycle,
//! idempotent creation under concurrency, transitions, exact money sums, refused input that
//! writes nothing, the cascade on delete, indexing the request payload, and tenant isolation.

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::helpers::{assert_error, call, json, rfc3339, spawn_app, time, TestApp, ADMIN_KEY};

mod lifecycle;
mod records;
mod refusals;

/// The midpoint of two times, as RFC 3339: a bound strictly between them.
fn between(a: &Value, b: &Value) -> String {
    let (a, b) = (time(a), time(b));
    assert!(
        b - a >= Duration::microseconds(2),
        "{a} and {b} are too close to put a bound between them"
    );
    rfc3339(a + (b - a) / 2)
}

async fn create_run(app: &TestApp, body: Value) -> Value {
    let (status, run) = call(app, Method::POST, "/v1/runs", Some(body)).await;
    assert_eq!(status, 201, "{run}");
    run
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, path, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {created}");
    created
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn list_ids(app: &TestApp, query: &str) -> Vec<String> {
    let (status, list) = call(app, Method::GET, &format!("/v1/runs{query}"), None).await;
    assert_eq!(status, 200, "{list}");
    ids(&list)
}

async fn count_rows(app: &TestApp, table: &str, run: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    let run: uuid::Uuid = run.parse().unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table} WHERE run_id = $1"), &[&run])
        .await
        .unwrap()
        .get(0)
}
