//! Runs, steps, artifacts, LLM calls, run stats and usage through the HTTP API: the lifecycle,
//! idempotent creation under concurrency, transitions, exact money sums, refused input that
//! writes nothing, the cascade on delete, indexing the request payload, and tenant isolation.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::documents::{call, collection};
use crate::api::helpers::{assert_error, json, spawn_app, TestApp, ADMIN_KEY};

mod lifecycle;
mod records;
mod refusals;

/// A request with `key`; a 204 comes back as `(204, null)`.
pub async fn call_as(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.with(method, path, key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    if res.status().as_u16() == 204 {
        return (204, Value::Null);
    }
    json(res).await
}

/// Percent-encodes a query value (RFC 3339 offsets carry `+` and `:`).
pub fn q(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("an RFC 3339 time: {v}")))
        .unwrap_or_else(|e| panic!("an RFC 3339 time ({e}): {v}"))
}

pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The midpoint of two times, as RFC 3339: a bound strictly between them.
fn between(a: &Value, b: &Value) -> String {
    let (a, b) = (time(a), time(b));
    assert!(
        b - a >= Duration::microseconds(2),
        "{a} and {b} are too close to put a bound between them"
    );
    rfc3339(a + (b - a) / 2)
}

/// A money amount in canonical form: a plain decimal string (no sign, no exponent), leading
/// zeros of the integer part and trailing zeros of the fraction dropped, so that "0.500" and
/// "0.5" compare equal and nothing is rounded.
pub fn decimal(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("money is a JSON string: {v}"));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && (!frac.is_empty() || !s.contains('.')),
        "a plain decimal string: {s:?}"
    );
    let int = match int.trim_start_matches('0') {
        "" => "0",
        rest => rest,
    };
    match frac.trim_end_matches('0') {
        "" => int.to_string(),
        frac => format!("{int}.{frac}"),
    }
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
