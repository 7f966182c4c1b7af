//! Conversations and their messages through the HTTP API: caller-chosen ids, listings by user
//! with a metadata filter and paging, appends numbered 1..n in commit order, the last n and
//! paging either way (every message exactly once while others append), refused input that
//! writes nothing, embedding on the conversation's or the tenant's say and search by meaning,
//! roles, and tenant isolation of every path.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::helpers::{assert_error, call, json, rfc3339, spawn_app, spawn_app_with, time, TestApp, ADMIN_KEY};

mod access;
mod lifecycle;
mod messages;
mod search;

/// A page of messages (`query` starts with `?` or is empty); asserts 200.
async fn page(app: &TestApp, conversation: &str, query: &str) -> Value {
    let (status, page) = call(
        app,
        Method::GET,
        &format!("/v1/conversations/{conversation}/messages{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page
}

fn seqs(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_else(|| panic!("an integer seq: {m}")))
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// The contents of search hits, best first.
fn hit_contents(hits: &Value) -> Vec<String> {
    hits["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {hits}"))
        .iter()
        .map(|h| {
            h["message"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("a hit with its message: {h}"))
                .to_string()
        })
        .collect()
}

/// The scores of message hits, best first.
fn hit_scores(hits: &Value) -> Vec<f64> {
    hits["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {hits}"))
        .iter()
        .map(|h| h["score"].as_f64().unwrap_or_else(|| panic!("a score: {h}")))
        .collect()
}

async fn search(app: &TestApp, conversation: &str, body: Value) -> Value {
    let (status, hits) = call(
        app,
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages/search"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    hits
}

/// A time strictly between two RFC 3339 times.
fn between(a: &Value, b: &Value) -> String {
    let (a, b) = (time(a), time(b));
    assert!(
        b - a >= chrono::Duration::microseconds(2),
        "{a} and {b} are too close to put a bound between them"
    );
    rfc3339(a + (b - a) / 2)
}

/// The code of a 400 that may be either of the two body-error codes.
fn bad_request(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&body["code"].as_str().unwrap_or("")),
        "{body}"
    );
}

const TOPICS: [(&str, &str, Option<&str>, &str); 5] = [
    (
        "user",
        "The weather in Lisbon is sunny and warm today, around 25 degrees.",
        None,
        "weather",
    ),
    (
        "user",
        "I want a refund for the broken headphones I ordered; please send my money back.",
        None,
        "shop",
    ),
    (
        "assistant",
        "Your flight to Berlin has been delayed by three hours at the airport.",
        Some("travel-bot"),
        "travel",
    ),
    (
        "assistant",
        "Here is a recipe for chocolate cake: flour, sugar, cocoa and eggs.",
        Some("chef-bot"),
        "food",
    ),
    (
        "user",
        "My laptop will not turn on since the latest software update.",
        None,
        "tech",
    ),
];
