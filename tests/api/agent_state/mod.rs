//! Per-agent state and workflow state of conversations through the HTTP API: versions with
//! If-Match and ETag (one winner among concurrent writers), the workflow's history, resuming a
//! workflow after the server restarts, and erasing everything of one user.

use std::collections::HashSet;
use std::sync::OnceLock;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::helpers::{
    append, assert_error, call, conversation, json, rows_of, shared_cluster, spawn_app, test_config, time, TestApp,
};

mod durability;
mod versions;

/// A PUT with an optional If-Match; returns the status, the ETag header and the body.
async fn put(app: &TestApp, path: &str, if_match: Option<&str>, body: Value) -> (u16, Option<String>, Value) {
    let mut req = app.with(Method::PUT, path, &app.owner_key).json(&body);
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    let res = req.send().await.unwrap();
    let etag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json(res).await;
    (status, etag, body)
}

async fn get(app: &TestApp, path: &str) -> (u16, Option<String>, Value) {
    let res = app.with(Method::GET, path, &app.owner_key).send().await.unwrap();
    let etag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json(res).await;
    (status, etag, body)
}

const STATE: &str = "/v1/conversations/c/agents/planner/state";

const WORKFLOW: &str = "/v1/conversations/c/workflow";

/// The model for apps this file starts itself (loaded once).
fn embedder() -> onebase::embed::Embedder {
    static EMBEDDER: OnceLock<onebase::embed::Embedder> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            onebase::embed::Embedder::load(onebase::embed::EmbedConfig::from_config(&test_config()))
                .expect("the embedding model loads")
        })
        .clone()
}

/// Starts a server on the database `db_name` of the shared cluster; returns its address, its
/// handle and the first-run owner key (on a fresh database).
async fn start(db_name: &str) -> (String, actix_web::dev::ServerHandle, Option<String>) {
    let config = test_config();
    let app = onebase::startup::Application::build_with_embedder(
        &config,
        shared_cluster().client_config(db_name),
        Some(embedder()),
    )
    .await
    .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let owner_key = app.first_run().map(|f| f.owner_key.clone());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    (address, handle, owner_key)
}

const SECRET_WORDS: [&str; 4] = [
    "tangerine-password",
    "my card number is 4111",
    "bank account of ACME",
    "secret-state-value",
];

/// Rows of a user: conversations and messages by user_id; agent states, workflows and workflow
/// history by the user's conversation ids (they carry no user_id).
async fn user_rows(app: &TestApp, user: &str, conversations: &[&str]) -> [i64; 5] {
    let client = app.pool.get().await.unwrap();
    let convs: Vec<String> = conversations.iter().map(|c| c.to_string()).collect();
    let mut out = [0; 5];
    for (i, sql) in [
        "SELECT count(*) FROM conversations WHERE user_id = $1 OR id = ANY($2)",
        "SELECT count(*) FROM messages WHERE user_id = $1 OR conversation_id = ANY($2)",
        "SELECT count(*) FROM agent_states WHERE $1::text IS NOT NULL AND conversation_id = ANY($2)",
        "SELECT count(*) FROM workflows WHERE $1::text IS NOT NULL AND conversation_id = ANY($2)",
        "SELECT count(*) FROM workflow_history WHERE $1::text IS NOT NULL AND conversation_id = ANY($2)",
    ]
    .iter()
    .enumerate()
    {
        out[i] = client.query_one(*sql, &[&user, &convs]).await.unwrap().get(0);
    }
    out
}

/// The first value under `key` anywhere in `v`.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => map.get(key).or_else(|| map.values().find_map(|c| find_key(c, key))),
        Value::Array(items) => items.iter().find_map(|c| find_key(c, key)),
        _ => None,
    }
}
