//! Long-term memories through the HTTP API on the real model: dedupe within a scope (the same
//! content, or a paraphrase above the threshold), history of every change, expiry (hidden at once,
//! purged by the sweep), search by meaning within a scope, the context call (last messages, the
//! user's memories, collection chunks), erasure, conversation retention and tenant isolation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::helpers::{
    append, assert_error, call, call_as, collection, conversation, json, q, spawn_app, spawn_app_with, time, TestApp,
};

mod access;
mod context;
mod search;
mod writes;

const PEANUTS: &str = "The user is allergic to peanuts.";
const PEANUTS_PARAPHRASE: &str = "The user has a peanut allergy.";
const WINDOW: &str = "The user prefers window seats on flights.";

/// Six distinct facts about one user, with a category, and for each a question that means it
/// without its words.
const FACTS: [(&str, &str, &str); 6] = [
    (PEANUTS, "health", "does the user have any food allergies"),
    (WINDOW, "travel", "which seat does the user want on a plane"),
    (
        "The user lives in Lisbon, Portugal.",
        "home",
        "where does the user live",
    ),
    (
        "The user works as a nurse at a hospital.",
        "work",
        "what is the user's job",
    ),
    (
        "The user has two cats named Miso and Tofu.",
        "home",
        "what pets does the user have",
    ),
    (
        "The user is learning to play the guitar.",
        "hobby",
        "what instrument is the user practicing",
    ),
];

/// POST /v1/memories with the owner key.
async fn add(app: &TestApp, body: Value) -> (u16, Value) {
    call(app, Method::POST, "/v1/memories", Some(body)).await
}

/// Adds a memory that must be new (201 `added`); returns the memory.
async fn added(app: &TestApp, body: Value) -> Value {
    let (status, written) = add(app, body.clone()).await;
    assert_eq!(
        (status, written["event"].as_str()),
        (201, Some("added")),
        "{body}: {written}"
    );
    written["memory"].clone()
}

fn id_of(memory: &Value) -> String {
    memory["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a memory with an id: {memory}"))
        .to_string()
}

/// POST /v1/memories/search; asserts 200.
async fn search(app: &TestApp, body: Value) -> Value {
    let (status, hits) = call(app, Method::POST, "/v1/memories/search", Some(body.clone())).await;
    assert_eq!(status, 200, "{body}: {hits}");
    hits
}

/// The contents of memory hits, best first.
fn contents(hits: &Value) -> Vec<String> {
    hits["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {hits}"))
        .iter()
        .map(|h| {
            h["memory"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("a hit with its memory: {h}"))
                .to_string()
        })
        .collect()
}

fn scores(hits: &Value) -> Vec<f64> {
    hits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap_or_else(|| panic!("a score: {h}")))
        .collect()
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {list}"))
        .iter()
        .map(id_of)
        .collect()
}

/// GET a path with the owner key; asserts 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = call(app, Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A 400 with either of the two body-error codes.
fn bad_request(status: u16, body: &Value, what: &Value) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&body["code"].as_str().unwrap_or("")),
        "{what}: {body}"
    );
}

/// Rows in `table` for `user`, read as the table owner.
async fn user_rows(app: &TestApp, table: &str, user: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"), &[&user])
        .await
        .unwrap()
        .get(0)
}

async fn memory_row_exists(app: &TestApp, id: &str) -> bool {
    let client = app.pool.get().await.unwrap();
    let id: uuid::Uuid = id.parse().unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM memories WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    n == 1
}

fn events(history: &Value) -> Vec<(String, String)> {
    history["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {history}"))
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap().to_string(),
                h["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}
