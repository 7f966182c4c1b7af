//! The tool-result cache through the HTTP API: change detection on canonical JSON, history,
//! freshness (max age, TTL, stale reads), listing by change time, deletes, refused names, the
//! retention sweep, indexing an entry's text, and tenant isolation.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::helpers::{
    assert_error, call, call_as, collection, json, q, spawn_app, spawn_app_with, time, TestApp, ADMIN_KEY,
};

mod entries;
mod upkeep;

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    call(app, Method::PUT, &format!("/v1/cache/{path}"), Some(body)).await
}

async fn put_raw(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let res = app
        .with(Method::PUT, &format!("/v1/cache/{path}"), &app.owner_key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json(res).await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, Method::GET, &format!("/v1/cache/{path}"), None).await
}

fn sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256:{}",
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn keys(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

async fn entry_rows(app: &TestApp) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM cache_entries", &[])
        .await
        .unwrap()
        .get(0)
}

async fn history_rows(app: &TestApp, namespace: &str, key: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM cache_history WHERE namespace = $1 AND key = $2",
            &[&namespace, &key],
        )
        .await
        .unwrap()
        .get(0)
}
