//! Runs, steps, artifacts, LLM calls, run stats and usage through the HTTP API: the lifecycle,
//! idempotent creation under concurrency, transitions, exact money sums, refused input that
//! writes nothing, the cascade on delete, indexing the request payload, and tenant isolation.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::documents::{call, collection};
use crate::api::helpers::{assert_error, json, spawn_app, TestApp, ADMIN_KEY};

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

#[tokio::test]
async fn a_run_is_created_read_listed_patched_and_deleted() {
    let app = spawn_app().await;
    let run = create_run(
        &app,
        json!({"actor": "planner", "request_payload": {"question": "why?", "n": [1, 2]},
        "autonomy_level": 2, "trace_id": "trace-1", "metadata": {"team": "ops"}}),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();
    let chosen = uuid::Uuid::now_v7().to_string();
    let named = create_run(
        &app,
        json!({"id": chosen, "actor": "critic", "request_payload": "text", "autonomy_level": "supervised"}),
    )
    .await;
    let (dup_id, dup_id_body) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"id": chosen, "actor": "x", "request_payload": {}})),
    )
    .await;
    let (dup_trace, dup_trace_body) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "x", "request_payload": {}, "trace_id": "trace-1"})),
    )
    .await;

    let (got_status, got) = call(&app, Method::GET, &format!("/v1/runs/{id}"), None).await;
    let (_, list) = call(&app, Method::GET, "/v1/runs", None).await;
    let (patch_status, patched) = call(
        &app,
        Method::PATCH,
        &format!("/v1/runs/{id}"),
        Some(json!({"metadata": {"team": "research"}, "error_message": "retried once"})),
    )
    .await;
    let (_, reread) = call(&app, Method::GET, &format!("/v1/runs/{id}"), None).await;
    let (del_status, _) = call(&app, Method::DELETE, &format!("/v1/runs/{id}"), None).await;
    let gone = app
        .with(Method::GET, &format!("/v1/runs/{id}"), &app.owner_key)
        .send()
        .await
        .unwrap();
    let deleted_again = app
        .with(Method::DELETE, &format!("/v1/runs/{id}"), &app.owner_key)
        .send()
        .await
        .unwrap();
    let patch_gone = app
        .with(Method::PATCH, &format!("/v1/runs/{id}"), &app.owner_key)
        .json(&json!({"status": "running"}))
        .send()
        .await
        .unwrap();

    assert_eq!(id.len(), 36, "a UUID: {run}");
    assert_eq!(id.parse::<uuid::Uuid>().unwrap().get_version_num(), 7, "a UUIDv7: {id}");
    assert_eq!(run["actor"], "planner");
    assert_eq!(run["status"], "queued", "the default status");
    assert_eq!(run["request_payload"], json!({"question": "why?", "n": [1, 2]}));
    assert_eq!(run["autonomy_level"], 2);
    assert_eq!(run["trace_id"], "trace-1");
    assert_eq!(run["idempotency_key"], Value::Null);
    assert_eq!(run["metadata"], json!({"team": "ops"}));
    assert_eq!(run["error_message"], Value::Null);
    assert_eq!(run["indexed_in"], Value::Null);
    assert_eq!(run["started_at"], Value::Null);
    assert_eq!(run["completed_at"], Value::Null);
    time(&run["created_at"]);
    time(&run["updated_at"]);
    assert_eq!(named["id"], chosen.as_str(), "the caller's id is kept");
    assert_eq!(named["autonomy_level"], "supervised");
    assert_eq!(named["request_payload"], "text");
    assert_eq!(
        (dup_id, dup_id_body["code"].as_str()),
        (409, Some("conflict")),
        "{dup_id_body}"
    );
    assert_eq!(
        (dup_trace, dup_trace_body["code"].as_str()),
        (409, Some("conflict")),
        "{dup_trace_body}"
    );

    assert_eq!(got_status, 200, "{got}");
    assert_eq!(got["artifacts"], json!([]), "GET by id carries the artifacts: {got}");
    for field in [
        "id",
        "actor",
        "status",
        "request_payload",
        "autonomy_level",
        "trace_id",
        "metadata",
        "created_at",
    ] {
        assert_eq!(got[field], run[field], "{field}");
    }
    assert_eq!(
        ids(&list),
        [chosen.clone(), id.clone()],
        "newest first, the failed creations wrote nothing: {list}"
    );
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("artifacts").is_none()),
        "no artifacts in the list: {list}"
    );
    assert_eq!(list["next_cursor"], Value::Null);

    assert_eq!(patch_status, 200, "{patched}");
    assert_eq!(patched["metadata"], json!({"team": "research"}));
    assert_eq!(patched["error_message"], "retried once");
    assert_eq!(patched["status"], "queued");
    assert!(time(&patched["updated_at"]) >= time(&run["updated_at"]));
    assert_eq!(reread["metadata"], json!({"team": "research"}), "the patch is stored");

    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    assert_error(deleted_again, 404, "not_found").await;
    assert_error(patch_gone, 404, "not_found").await;
    assert_eq!(list_ids(&app, "").await, [chosen], "only the other run is left");
}

#[tokio::test]
async fn the_run_list_filters_by_actor_status_and_time_and_pages_newest_first() {
    let app = spawn_app().await;
    let mut runs = vec![];
    for (i, (actor, status)) in [
        ("alice", "queued"),
        ("bob", "running"),
        ("alice", "completed"),
        ("bob", "queued"),
        ("alice", "running"),
    ]
    .into_iter()
    .enumerate()
    {
        runs.push(
            create_run(
                &app,
                json!({"actor": actor, "request_payload": {"i": i}, "status": status}),
            )
            .await,
        );
    }
    let id = |i: usize| runs[i]["id"].as_str().unwrap().to_string();

    let all = list_ids(&app, "").await;
    let alice = list_ids(&app, "?actor=alice").await;
    let running = list_ids(&app, "?status=running").await;
    let bob_queued = list_ids(&app, "?actor=bob&status=queued").await;
    let since = list_ids(&app, &format!("?since={}", q(runs[1]["created_at"].as_str().unwrap()))).await;
    let until = list_ids(&app, &format!("?until={}", q(runs[3]["created_at"].as_str().unwrap()))).await;
    let window = list_ids(
        &app,
        &format!(
            "?since={}&until={}",
            q(runs[1]["created_at"].as_str().unwrap()),
            q(runs[3]["created_at"].as_str().unwrap())
        ),
    )
    .await;
    let nobody = list_ids(&app, "?actor=carol").await;

    let mut paged = vec![];
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/runs?limit=2&cursor={}", q(c)),
            None => "/v1/runs?limit=2".to_string(),
        };
        let (status, page) = call(&app, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let got = ids(&page);
        assert!(got.len() <= 2, "{page}");
        paged.extend(got);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    let (alice_page_status, alice_page) = call(&app, Method::GET, "/v1/runs?actor=alice&limit=2", None).await;
    let alice_next = alice_page["next_cursor"]
        .as_str()
        .expect("a second page of alice's runs")
        .to_string();
    let (_, alice_rest) = call(
        &app,
        Method::GET,
        &format!("/v1/runs?actor=alice&limit=2&cursor={}", q(&alice_next)),
        None,
    )
    .await;
    let bad_status = app
        .with(Method::GET, "/v1/runs?status=sleeping", &app.owner_key)
        .send()
        .await
        .unwrap();
    let bad_limit = app
        .with(Method::GET, "/v1/runs?limit=501", &app.owner_key)
        .send()
        .await
        .unwrap();
    let zero_limit = app
        .with(Method::GET, "/v1/runs?limit=0", &app.owner_key)
        .send()
        .await
        .unwrap();

    assert_eq!(all, [id(4), id(3), id(2), id(1), id(0)], "newest first");
    assert_eq!(alice, [id(4), id(2), id(0)]);
    assert_eq!(running, [id(4), id(1)]);
    assert_eq!(bob_queued, [id(3)]);
    assert_eq!(since, [id(4), id(3), id(2), id(1)], "since is inclusive");
    assert_eq!(until, [id(2), id(1), id(0)], "until is exclusive");
    assert_eq!(window, [id(2), id(1)]);
    assert!(nobody.is_empty());
    assert_eq!(
        paged, all,
        "the pages together are the whole list, in order, without repeats"
    );
    assert_eq!(pages, 3);
    assert_eq!(alice_page_status, 200);
    assert_eq!(ids(&alice_page), [id(4), id(2)]);
    assert_eq!(ids(&alice_rest), [id(0)], "the cursor keeps the filter's order");
    assert_eq!(alice_rest["next_cursor"], Value::Null);
    let (bad_code, bad_body) = json(bad_status).await;
    assert_eq!(bad_code, 400, "an unknown status filter: {bad_body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&bad_body["code"].as_str().unwrap_or("")),
        "{bad_body}"
    );
    assert_error(bad_limit, 400, "validation_failed").await;
    assert_error(zero_limit, 400, "validation_failed").await;
    // created running / completed: the times are set on creation
    assert!(
        runs[1]["started_at"].is_string() && runs[1]["completed_at"].is_null(),
        "{}",
        runs[1]
    );
    assert!(runs[2]["completed_at"].is_string(), "{}", runs[2]);
}

#[tokio::test]
async fn fifty_concurrent_posts_with_one_idempotency_key_create_exactly_one_run() {
    let app = spawn_app().await;
    let body = json!({"actor": "agent", "request_payload": {"task": "summarize the quarterly report"}, "metadata": {"try": 1}});

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let req = app
                .with(Method::POST, "/v1/runs", &app.owner_key)
                .header("Idempotency-Key", "order-7781")
                .json(&body);
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let replayed = res
                    .headers()
                    .get("idempotent-replayed")
                    .map(|v| v.to_str().unwrap().to_string());
                let (status, run) = json(res).await;
                (status, run, replayed)
            })
        })
        .collect();
    let results: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let created: Vec<_> = results.iter().filter(|(s, _, _)| *s == 201).collect();
    let replayed: Vec<_> = results.iter().filter(|(s, _, _)| *s == 200).collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one 201: {:?}",
        results.iter().map(|(s, b, _)| (s, b.to_string())).collect::<Vec<_>>()
    );
    assert_eq!(
        replayed.len(),
        49,
        "the rest are replays: {:?}",
        results
            .iter()
            .filter(|(s, _, _)| *s != 200 && *s != 201)
            .collect::<Vec<_>>()
    );
    let id = created[0].1["id"].as_str().unwrap().to_string();
    assert_eq!(created[0].1["idempotency_key"], "order-7781");
    assert_eq!(created[0].2, None, "the original is not marked replayed");
    for (_, run, header) in &replayed {
        assert_eq!(run["id"], id.as_str(), "every replay returns the original run");
        assert_eq!(run["created_at"], created[0].1["created_at"]);
        assert_eq!(header.as_deref(), Some("true"), "Idempotent-Replayed on a replay");
    }
    assert_eq!(
        list_ids(&app, "").await,
        std::slice::from_ref(&id),
        "one run in the database"
    );

    // Same key, another body: a conflict, nothing written.
    let conflict = app
        .with(Method::POST, "/v1/runs", &app.owner_key)
        .header("Idempotency-Key", "order-7781")
        .json(&json!({"actor": "agent", "request_payload": {"task": "something else"}}))
        .send()
        .await
        .unwrap();
    assert_error(conflict, 409, "idempotency_conflict").await;

    // The body field works the same way, and is the same key as the header.
    let first = create_run(
        &app,
        json!({"actor": "agent", "request_payload": {"task": "b"}, "idempotency_key": "order-7782"}),
    )
    .await;
    let (again_status, again) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "agent", "request_payload": {"task": "b"}, "idempotency_key": "order-7782"})),
    )
    .await;
    let by_header = app
        .with(Method::POST, "/v1/runs", &app.owner_key)
        .header("Idempotency-Key", "order-7782")
        .json(&json!({"actor": "agent", "request_payload": {"task": "b"}}))
        .send()
        .await
        .unwrap();
    let (by_header_status, by_header) = json(by_header).await;
    let (other_status, other) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "agent", "request_payload": {"task": "c"}, "idempotency_key": "order-7782"})),
    )
    .await;
    let both = app
        .with(Method::POST, "/v1/runs", &app.owner_key)
        .header("Idempotency-Key", "order-1")
        .json(&json!({"actor": "agent", "request_payload": {}, "idempotency_key": "order-2"}))
        .send()
        .await
        .unwrap();
    let empty_key = app
        .with(Method::POST, "/v1/runs", &app.owner_key)
        .json(&json!({"actor": "agent", "request_payload": {}, "idempotency_key": ""}))
        .send()
        .await
        .unwrap();

    assert_eq!(first["idempotency_key"], "order-7782");
    assert_eq!((again_status, &again["id"]), (200, &first["id"]), "{again}");
    assert_eq!(
        (by_header_status, &by_header["id"]),
        (200, &first["id"]),
        "the header is the same key as the body field: {by_header}"
    );
    assert_eq!(
        (other_status, other["code"].as_str()),
        (409, Some("idempotency_conflict")),
        "{other}"
    );
    assert_error(both, 400, "validation_failed").await;
    assert_error(empty_key, 400, "validation_failed").await;
    let mut want = vec![first["id"].as_str().unwrap().to_string(), id];
    let mut got = list_ids(&app, "").await;
    want.sort();
    got.sort();
    assert_eq!(got, want, "two runs in all");
}

#[tokio::test]
async fn runs_move_only_through_the_allowed_transitions() {
    let app = spawn_app().await;
    let run = create_run(&app, json!({"actor": "a", "request_payload": {}})).await;
    let path = format!("/v1/runs/{}", run["id"].as_str().unwrap());
    let patch = |status: &str| json!({"status": status});

    let (s1, running) = call(&app, Method::PATCH, &path, Some(patch("running"))).await;
    let (s2, still_running) = call(&app, Method::PATCH, &path, Some(patch("running"))).await;
    let early_end = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&json!({"completed_at": Utc::now().to_rfc3339()}))
        .send()
        .await
        .unwrap();
    let (s3, completed) = call(&app, Method::PATCH, &path, Some(patch("completed"))).await;
    let (s4, completed_again) = call(&app, Method::PATCH, &path, Some(patch("completed"))).await;
    let back = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&patch("running"))
        .send()
        .await
        .unwrap();
    let to_failed = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&patch("failed"))
        .send()
        .await
        .unwrap();
    let bogus = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&patch("paused"))
        .send()
        .await
        .unwrap();
    let (_, reread) = call(&app, Method::GET, &path, None).await;

    assert_eq!(s1, 200, "queued -> running: {running}");
    assert_eq!(running["status"], "running");
    assert!(running["started_at"].is_string(), "started_at set: {running}");
    assert!(running["completed_at"].is_null());
    assert!(time(&running["started_at"]) >= time(&run["created_at"]));
    assert_eq!(s2, 200, "the same status again is a no-op: {still_running}");
    assert_eq!(
        still_running["started_at"], running["started_at"],
        "the no-op keeps started_at"
    );
    assert_error(early_end, 409, "invalid_transition").await;
    assert_eq!(s3, 200, "running -> completed: {completed}");
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["started_at"], running["started_at"]);
    assert!(
        time(&completed["completed_at"]) >= time(&completed["started_at"]),
        "{completed}"
    );
    assert_eq!(s4, 200, "{completed_again}");
    assert_eq!(
        completed_again["completed_at"], completed["completed_at"],
        "the no-op keeps completed_at"
    );
    assert_error(back, 409, "invalid_transition").await;
    assert_error(to_failed, 409, "invalid_transition").await;
    let (bogus_code, bogus_body) = json(bogus).await;
    assert_eq!(bogus_code, 400, "an unknown status: {bogus_body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&bogus_body["code"].as_str().unwrap_or("")),
        "{bogus_body}"
    );
    assert_eq!(
        reread["status"], "completed",
        "refused patches change nothing: {reread}"
    );
    assert_eq!(reread["completed_at"], completed["completed_at"]);

    // queued -> completed is not allowed; queued -> cancelled is, and ends the run.
    let other = create_run(&app, json!({"actor": "a", "request_payload": {}})).await;
    let other_path = format!("/v1/runs/{}", other["id"].as_str().unwrap());
    let skip = app
        .with(Method::PATCH, &other_path, &app.owner_key)
        .json(&patch("completed"))
        .send()
        .await
        .unwrap();
    assert_error(skip, 409, "invalid_transition").await;
    let (cancel_status, cancelled) = call(&app, Method::PATCH, &other_path, Some(patch("cancelled"))).await;
    assert_eq!(cancel_status, 200, "{cancelled}");
    assert!(
        cancelled["completed_at"].is_string() && cancelled["started_at"].is_null(),
        "{cancelled}"
    );

    // A run created running has started_at; failing it with an explicit completed_at keeps that time.
    let live = create_run(&app, json!({"actor": "a", "request_payload": {}, "status": "running"})).await;
    assert!(live["started_at"].is_string(), "{live}");
    let end = rfc3339(time(&live["started_at"]) + Duration::seconds(42));
    let (fail_status, failed) = call(
        &app,
        Method::PATCH,
        &format!("/v1/runs/{}", live["id"].as_str().unwrap()),
        Some(json!({"status": "failed", "completed_at": end, "error_message": "tool timed out"})),
    )
    .await;
    assert_eq!(fail_status, 200, "{failed}");
    assert_eq!(time(&failed["completed_at"]), time(&json!(end)));
    assert_eq!(failed["error_message"], "tool timed out");

    // Unknown runs.
    let unknown = format!("/v1/runs/{}", uuid::Uuid::now_v7());
    let get = app.with(Method::GET, &unknown, &app.owner_key).send().await.unwrap();
    let patch_unknown = app
        .with(Method::PATCH, &unknown, &app.owner_key)
        .json(&patch("running"))
        .send()
        .await
        .unwrap();
    assert_error(get, 404, "not_found").await;
    assert_error(patch_unknown, 404, "not_found").await;
}

#[tokio::test]
async fn steps_artifacts_and_llm_calls_are_recorded_and_listed_in_order() {
    let app = spawn_app().await;
    let run = create_run(&app, json!({"actor": "a", "request_payload": {}, "status": "running"})).await;
    let other = create_run(&app, json!({"actor": "a", "request_payload": {}})).await;
    let base = format!("/v1/runs/{}", run["id"].as_str().unwrap());
    let other_base = format!("/v1/runs/{}", other["id"].as_str().unwrap());

    let call_a = post_ok(
        &app,
        &format!("{base}/llm-calls"),
        json!({"model": "gpt-x", "provider": "openai",
        "prompt_tokens": 120, "completion_tokens": 30, "cost_usd": "0.000125", "latency_ms": 850}),
    )
    .await;
    let call_b = post_ok(&app, &format!("{base}/llm-calls"), json!({"model": "claude-y", "provider": "anthropic",
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 20, "cost_usd": "1.250000000000", "latency_ms": 0})).await;
    let foreign_call = post_ok(
        &app,
        &format!("{other_base}/llm-calls"),
        json!({"model": "m", "provider": "p",
        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0", "latency_ms": 1}),
    )
    .await;

    let step2 = post_ok(
        &app,
        &format!("{base}/steps"),
        json!({"step_number": 2, "node_name": "answer", "status": "completed",
        "input_data": {"draft": true}, "output_data": {"text": "42"}, "llm_call_id": call_a["id"]}),
    )
    .await;
    let step0 = post_ok(
        &app,
        &format!("{base}/steps"),
        json!({"step_number": 0, "node_name": "plan", "status": "completed",
        "started_at": "2025-01-01T00:00:00Z", "completed_at": "2025-01-01T00:00:01.5Z"}),
    )
    .await;
    let step1 = post_ok(
        &app,
        &format!("{base}/steps"),
        json!({"step_number": 1, "node_name": "search", "status": "failed", "error_message": "timeout"}),
    )
    .await;
    let (dup_status, dup) = call(
        &app,
        Method::POST,
        &format!("{base}/steps"),
        Some(json!({"step_number": 1, "node_name": "again", "status": "pending"})),
    )
    .await;
    let (foreign_status, foreign) = call(
        &app,
        Method::POST,
        &format!("{base}/steps"),
        Some(json!({"step_number": 3, "node_name": "x", "status": "pending", "llm_call_id": foreign_call["id"]})),
    )
    .await;
    let (_, steps) = call(&app, Method::GET, &format!("{base}/steps"), None).await;

    let call_c = post_ok(
        &app,
        &format!("{base}/llm-calls"),
        json!({"step_id": step1["id"], "model": "gpt-x", "provider": "openai",
        "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": "0.5", "latency_ms": 12}),
    )
    .await;
    let (foreign_step_status, foreign_step) = call(
        &app,
        Method::POST,
        &format!("{other_base}/llm-calls"),
        Some(json!({"step_id": step1["id"],
        "model": "m", "provider": "p", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0", "latency_ms": 1})),
    )
    .await;
    let (_, calls) = call(&app, Method::GET, &format!("{base}/llm-calls"), None).await;
    let (_, other_calls) = call(&app, Method::GET, &format!("{other_base}/llm-calls"), None).await;

    let art1 = post_ok(
        &app,
        &format!("{base}/artifacts"),
        json!({"artifact_type": "report", "url": "s3://bucket/report.pdf", "metadata": {"pages": 3}}),
    )
    .await;
    let art2 = post_ok(
        &app,
        &format!("{base}/artifacts"),
        json!({"artifact_type": "log", "url": "https://logs.example/run.txt"}),
    )
    .await;
    let (_, artifacts) = call(&app, Method::GET, &format!("{base}/artifacts"), None).await;
    let (_, full) = call(&app, Method::GET, &base, None).await;
    let (_, other_artifacts) = call(&app, Method::GET, &format!("{other_base}/artifacts"), None).await;

    // LLM calls: fields, tokens, money as a string
    assert_eq!(call_a["run_id"], run["id"]);
    assert_eq!(call_a["step_id"], Value::Null);
    assert_eq!(call_a["model"], "gpt-x");
    assert_eq!(call_a["provider"], "openai");
    assert_eq!(
        (call_a["prompt_tokens"].as_i64(), call_a["completion_tokens"].as_i64()),
        (Some(120), Some(30))
    );
    assert_eq!(call_a["total_tokens"], 150, "total defaults to prompt + completion");
    assert_eq!(decimal(&call_a["cost_usd"]), "0.000125");
    assert_eq!(call_a["latency_ms"], 850);
    time(&call_a["created_at"]);
    assert_eq!(call_b["total_tokens"], 20, "an explicit total is kept");
    assert_eq!(decimal(&call_b["cost_usd"]), "1.25");
    assert_eq!(call_c["step_id"], step1["id"]);
    assert_eq!(
        ids(&calls),
        [
            call_a["id"].as_str().unwrap(),
            call_b["id"].as_str().unwrap(),
            call_c["id"].as_str().unwrap()
        ],
        "oldest first: {calls}"
    );
    assert_eq!(
        decimal(&calls["data"][0]["cost_usd"]),
        "0.000125",
        "listed with the exact amount"
    );
    assert!(
        (400..500).contains(&foreign_step_status),
        "a step of another run: {foreign_step}"
    );
    assert_eq!(
        ids(&other_calls),
        [foreign_call["id"].as_str().unwrap()],
        "the refused call wrote nothing"
    );

    // Steps: ordered by step_number, whatever the posting order
    assert_eq!(step2["run_id"], run["id"]);
    assert_eq!(step2["llm_call_id"], call_a["id"]);
    assert_eq!(step2["input_data"], json!({"draft": true}));
    assert_eq!(step2["output_data"], json!({"text": "42"}));
    assert_eq!(time(&step0["completed_at"]), time(&json!("2025-01-01T00:00:01.5Z")));
    assert_eq!(step1["error_message"], "timeout");
    assert_eq!((dup_status, dup["code"].as_str()), (409, Some("conflict")), "{dup}");
    assert_eq!(
        (foreign_status, foreign["code"].as_str()),
        (400, Some("validation_failed")),
        "a call of another run: {foreign}"
    );
    let numbers: Vec<_> = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step_number"].as_i64().unwrap())
        .collect();
    let names: Vec<_> = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node_name"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2], "{steps}");
    assert_eq!(names, ["plan", "search", "answer"], "the duplicate wrote nothing");
    assert_eq!(
        ids(&steps),
        [
            step0["id"].as_str().unwrap(),
            step1["id"].as_str().unwrap(),
            step2["id"].as_str().unwrap()
        ]
    );

    // Artifacts: oldest first, and on the run
    assert_eq!(art1["run_id"], run["id"]);
    assert_eq!(art1["artifact_type"], "report");
    assert_eq!(art1["url"], "s3://bucket/report.pdf");
    assert_eq!(art1["metadata"], json!({"pages": 3}));
    assert_eq!(
        ids(&artifacts),
        [art1["id"].as_str().unwrap(), art2["id"].as_str().unwrap()]
    );
    let on_run: Vec<_> = full["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("{full}"))
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(on_run, [art1["id"].clone(), art2["id"].clone()], "{full}");
    assert!(other_artifacts["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn stats_and_usage_sum_tokens_and_money_exactly() {
    let app = spawn_app().await;
    let alice = create_run(
        &app,
        json!({"actor": "alice", "request_payload": {}, "status": "running"}),
    )
    .await;
    let bob = create_run(&app, json!({"actor": "bob", "request_payload": {}})).await;
    let (a, b) = (
        format!("/v1/runs/{}", alice["id"].as_str().unwrap()),
        format!("/v1/runs/{}", bob["id"].as_str().unwrap()),
    );
    post_ok(
        &app,
        &format!("{a}/steps"),
        json!({"step_number": 0, "node_name": "n0", "status": "completed"}),
    )
    .await;
    post_ok(
        &app,
        &format!("{a}/steps"),
        json!({"step_number": 1, "node_name": "n1", "status": "completed"}),
    )
    .await;
    let c1 = post_ok(
        &app,
        &format!("{a}/llm-calls"),
        json!({"model": "small", "provider": "acme",
        "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": "0.000125", "latency_ms": 100}),
    )
    .await;
    let c2 = post_ok(
        &app,
        &format!("{a}/llm-calls"),
        json!({"model": "large", "provider": "globex",
        "prompt_tokens": 100, "completion_tokens": 50, "cost_usd": "0.5", "latency_ms": 200}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let c3 = post_ok(
        &app,
        &format!("{b}/llm-calls"),
        json!({"model": "small", "provider": "acme",
        "prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1300, "cost_usd": "1.25", "latency_ms": 300}),
    )
    .await;
    // 0.1 + 0.2 is not 0.3 in floating point; the sums must be exact.
    let c4 = post_ok(
        &app,
        &format!("{b}/llm-calls"),
        json!({"model": "tiny", "provider": "acme",
        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.1", "latency_ms": 1}),
    )
    .await;
    let c5 = post_ok(
        &app,
        &format!("{b}/llm-calls"),
        json!({"model": "tiny", "provider": "acme",
        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.2", "latency_ms": 1}),
    )
    .await;
    let end = rfc3339(time(&alice["started_at"]) + Duration::seconds(90));
    let (end_status, ended) = call(
        &app,
        Method::PATCH,
        &a,
        Some(json!({"status": "completed", "completed_at": end})),
    )
    .await;
    assert_eq!(end_status, 200, "{ended}");

    let (sa_status, sa) = call(&app, Method::GET, &format!("{a}/stats"), None).await;
    let (_, sb) = call(&app, Method::GET, &format!("{b}/stats"), None).await;
    assert_eq!(sa_status, 200, "{sa}");
    assert_eq!(sa["run_id"], alice["id"]);
    assert_eq!(sa["step_count"], 2);
    assert_eq!(sa["llm_calls"], 2);
    assert_eq!(sa["prompt_tokens"], 110);
    assert_eq!(sa["completion_tokens"], 55);
    assert_eq!(sa["total_tokens"], 165);
    assert_eq!(decimal(&sa["total_cost_usd"]), "0.500125", "{sa}");
    assert!(
        (sa["duration_seconds"].as_f64().unwrap() - 90.0).abs() < 1e-6,
        "completed_at - started_at: {sa}"
    );
    assert_eq!(sb["step_count"], 0);
    assert_eq!(sb["llm_calls"], 3);
    assert_eq!(sb["total_tokens"], 1304, "the explicit total counts: {sb}");
    assert_eq!(decimal(&sb["total_cost_usd"]), "1.55", "exact: 1.25 + 0.1 + 0.2: {sb}");
    let running_for = sb["duration_seconds"].as_f64().unwrap();
    assert!(
        (0.0..600.0).contains(&running_for),
        "now - created_at for a queued run: {sb}"
    );

    let usage = |group: &'static str| {
        let app = &app;
        async move {
            let path = if group.is_empty() {
                "/v1/usage".to_string()
            } else {
                format!("/v1/usage?group_by={group}")
            };
            let (status, body) = call(app, Method::GET, &path, None).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    // (key, llm_calls, prompt, completion, total, cost) in the expected order
    let rows = |body: &Value| -> Vec<(String, i64, i64, i64, i64, String)> {
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap().to_string(),
                    r["llm_calls"].as_i64().unwrap(),
                    r["prompt_tokens"].as_i64().unwrap(),
                    r["completion_tokens"].as_i64().unwrap(),
                    r["total_tokens"].as_i64().unwrap(),
                    decimal(&r["cost_usd"]),
                )
            })
            .collect()
    };
    let row = |k: &str, n, p, c, t, cost: &str| (k.to_string(), n, p, c, t, cost.to_string());

    let by_default = usage("").await;
    let by_model = usage("model").await;
    let by_provider = usage("provider").await;
    let by_actor = usage("actor").await;
    let by_day = usage("day").await;

    assert_eq!(by_default["group_by"], "model");
    assert_eq!(rows(&by_default), rows(&by_model));
    assert_eq!(by_model["group_by"], "model");
    assert_eq!(
        rows(&by_model),
        [
            row("small", 2, 1010, 205, 1315, "1.250125"),
            row("large", 1, 100, 50, 150, "0.5"),
            row("tiny", 2, 2, 2, 4, "0.3"),
        ],
        "by cost descending: {by_model}"
    );
    assert_eq!(
        rows(&by_provider),
        [
            row("acme", 4, 1012, 207, 1319, "1.550125"),
            row("globex", 1, 100, 50, 150, "0.5")
        ],
        "{by_provider}"
    );
    assert_eq!(
        rows(&by_actor),
        [
            row("bob", 3, 1002, 202, 1304, "1.55"),
            row("alice", 2, 110, 55, 165, "0.500125")
        ],
        "{by_actor}"
    );
    let mut days: Vec<String> = [&c1, &c2, &c3, &c4, &c5]
        .iter()
        .map(|c| {
            time(&c["created_at"])
                .with_timezone(&Utc)
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    days.dedup();
    let day_rows = rows(&by_day);
    assert_eq!(
        day_rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        days,
        "UTC days ascending: {by_day}"
    );
    assert_eq!(day_rows.iter().map(|r| r.1).sum::<i64>(), 5);
    for body in [&by_model, &by_provider, &by_actor, &by_day] {
        let total = &body["total"];
        assert_eq!(total["llm_calls"], 5, "{body}");
        assert_eq!(total["prompt_tokens"], 1112);
        assert_eq!(total["completion_tokens"], 257);
        assert_eq!(total["total_tokens"], 1469);
        assert_eq!(decimal(&total["cost_usd"]), "2.050125", "{body}");
    }

    // since / until on the call's created_at
    let cut = between(&c2["created_at"], &c3["created_at"]);
    let (_, later) = call(
        &app,
        Method::GET,
        &format!("/v1/usage?group_by=actor&since={}", q(&cut)),
        None,
    )
    .await;
    let (_, earlier) = call(
        &app,
        Method::GET,
        &format!("/v1/usage?group_by=actor&until={}", q(&cut)),
        None,
    )
    .await;
    let future = rfc3339((Utc::now() + Duration::days(1)).fixed_offset());
    let (_, none) = call(&app, Method::GET, &format!("/v1/usage?since={}", q(&future)), None).await;
    let bad = app
        .with(Method::GET, "/v1/usage?group_by=colour", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(rows(&later), [row("bob", 3, 1002, 202, 1304, "1.55")], "{later}");
    assert_eq!(rows(&earlier), [row("alice", 2, 110, 55, 165, "0.500125")], "{earlier}");
    assert!(none["data"].as_array().unwrap().is_empty(), "{none}");
    assert_eq!(none["total"]["llm_calls"], 0, "{none}");
    assert_eq!(decimal(&none["total"]["cost_usd"]), "0");
    let (bad_code, bad_body) = json(bad).await;
    assert_eq!(bad_code, 400, "an unknown group_by: {bad_body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&bad_body["code"].as_str().unwrap_or("")),
        "{bad_body}"
    );
}

#[tokio::test]
async fn refused_input_writes_nothing() {
    let app = spawn_app().await;
    let run = create_run(&app, json!({"actor": "a", "request_payload": {}})).await;
    let id = run["id"].as_str().unwrap().to_string();
    let calls_path = format!("/v1/runs/{id}/llm-calls");
    let good_call = json!({"model": "m", "provider": "p", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.01", "latency_ms": 1});
    let with = |field: &str, value: Value| {
        let mut body = good_call.clone();
        body[field] = value;
        body
    };

    for (what, body) in [
        ("negative prompt_tokens", with("prompt_tokens", json!(-1))),
        ("negative completion_tokens", with("completion_tokens", json!(-5))),
        ("negative total_tokens", with("total_tokens", json!(-2))),
        ("negative latency", with("latency_ms", json!(-1))),
        ("cost_usd as a JSON number", with("cost_usd", json!(0.5))),
        ("cost_usd not a number", with("cost_usd", json!("abc"))),
        ("negative cost_usd", with("cost_usd", json!("-0.5"))),
        ("cost_usd with 13 decimals", with("cost_usd", json!("0.0000000000001"))),
        ("empty model", with("model", json!(""))),
    ] {
        let res = app
            .with(Method::POST, &calls_path, &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some("validation_failed")),
            "{what}: {err}"
        );
        let (_, calls) = call(&app, Method::GET, &calls_path, None).await;
        assert!(
            calls["data"].as_array().unwrap().is_empty(),
            "{what} wrote nothing: {calls}"
        );
    }
    assert_eq!(count_rows(&app, "llm_calls", &id).await, 0);
    // 12 decimals is the most allowed.
    let ok = post_ok(&app, &calls_path, with("cost_usd", json!("0.000000000001"))).await;
    assert_eq!(decimal(&ok["cost_usd"]), "0.000000000001");

    for (what, body) in [
        (
            "invalid status",
            json!({"actor": "a", "request_payload": {}, "status": "sleeping"}),
        ),
        ("empty actor", json!({"actor": "", "request_payload": {}})),
        (
            "actor over 256 chars",
            json!({"actor": "a".repeat(257), "request_payload": {}}),
        ),
        (
            "autonomy_level over 64 chars",
            json!({"actor": "a", "request_payload": {}, "autonomy_level": "x".repeat(65)}),
        ),
        (
            "empty trace_id",
            json!({"actor": "a", "request_payload": {}, "trace_id": ""}),
        ),
        (
            "metadata not an object",
            json!({"actor": "a", "request_payload": {}, "metadata": [1]}),
        ),
    ] {
        let res = app
            .with(Method::POST, "/v1/runs", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        assert_eq!(status, 400, "{what}: {err}");
        assert!(
            ["validation_failed", "invalid_request"].contains(&err["code"].as_str().unwrap_or("")),
            "{what}: {err}"
        );
        assert_eq!(
            list_ids(&app, "").await,
            std::slice::from_ref(&id),
            "{what} wrote nothing"
        );
    }
    let malformed = app
        .with(Method::POST, "/v1/runs", &app.owner_key)
        .header("content-type", "application/json")
        .body("{\"actor\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "invalid_json").await;

    let steps_path = format!("/v1/runs/{id}/steps");
    for (what, body) in [
        (
            "invalid step status",
            json!({"step_number": 0, "node_name": "n", "status": "done"}),
        ),
        (
            "negative step_number",
            json!({"step_number": -1, "node_name": "n", "status": "pending"}),
        ),
        (
            "empty node_name",
            json!({"step_number": 0, "node_name": "", "status": "pending"}),
        ),
    ] {
        let res = app
            .with(Method::POST, &steps_path, &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        assert_eq!(status, 400, "{what}: {err}");
        assert!(
            ["validation_failed", "invalid_request"].contains(&err["code"].as_str().unwrap_or("")),
            "{what}: {err}"
        );
    }
    let empty_type = app
        .with(Method::POST, &format!("/v1/runs/{id}/artifacts"), &app.owner_key)
        .json(&json!({"artifact_type": "", "url": "https://x"}))
        .send()
        .await
        .unwrap();
    assert_error(empty_type, 400, "validation_failed").await;
    let (_, steps) = call(&app, Method::GET, &steps_path, None).await;
    let (_, artifacts) = call(&app, Method::GET, &format!("/v1/runs/{id}/artifacts"), None).await;
    assert!(steps["data"].as_array().unwrap().is_empty(), "{steps}");
    assert!(artifacts["data"].as_array().unwrap().is_empty(), "{artifacts}");
    assert_eq!(count_rows(&app, "run_steps", &id).await, 0);
    assert_eq!(count_rows(&app, "run_artifacts", &id).await, 0);

    // Children of an unknown run.
    let unknown = uuid::Uuid::now_v7();
    let step = app
        .with(Method::POST, &format!("/v1/runs/{unknown}/steps"), &app.owner_key)
        .json(&json!({"step_number": 0, "node_name": "n", "status": "pending"}))
        .send()
        .await
        .unwrap();
    let llm = app
        .with(Method::POST, &format!("/v1/runs/{unknown}/llm-calls"), &app.owner_key)
        .json(&good_call)
        .send()
        .await
        .unwrap();
    assert_error(step, 404, "not_found").await;
    assert_error(llm, 404, "not_found").await;

    // Readers read, writers write, the admin key is not a tenant credential.
    let (_, reader) = app.create_key(app.default_tenant, "reader").await;
    let (_, writer) = app.create_key(app.default_tenant, "writer").await;
    let as_reader = app
        .with(Method::POST, "/v1/runs", &reader)
        .json(&json!({"actor": "r", "request_payload": {}}))
        .send()
        .await
        .unwrap();
    let as_admin = app.with(Method::GET, "/v1/runs", ADMIN_KEY).send().await.unwrap();
    let (read_status, _) = call_as(&app, &reader, Method::GET, &format!("/v1/runs/{id}"), None).await;
    let (write_status, written) = call_as(
        &app,
        &writer,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "w", "request_payload": {}})),
    )
    .await;
    assert_error(as_reader, 403, "forbidden").await;
    assert_error(as_admin, 403, "forbidden").await;
    assert_eq!(read_status, 200);
    assert_eq!(write_status, 201, "{written}");
}

#[tokio::test]
async fn deleting_a_run_removes_its_steps_artifacts_and_llm_calls() {
    let app = spawn_app().await;
    let doomed = create_run(&app, json!({"actor": "a", "request_payload": {}, "status": "running"})).await;
    let kept = create_run(&app, json!({"actor": "a", "request_payload": {}})).await;
    let (id, kept_id) = (
        doomed["id"].as_str().unwrap().to_string(),
        kept["id"].as_str().unwrap().to_string(),
    );
    for run in [&id, &kept_id] {
        let llm = post_ok(
            &app,
            &format!("/v1/runs/{run}/llm-calls"),
            json!({"model": "m", "provider": "p",
            "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": "0.25", "latency_ms": 9}),
        )
        .await;
        let step = post_ok(
            &app,
            &format!("/v1/runs/{run}/steps"),
            json!({"step_number": 0, "node_name": "n", "status": "completed", "llm_call_id": llm["id"]}),
        )
        .await;
        post_ok(
            &app,
            &format!("/v1/runs/{run}/steps"),
            json!({"step_number": 1, "node_name": "m", "status": "pending"}),
        )
        .await;
        post_ok(
            &app,
            &format!("/v1/runs/{run}/llm-calls"),
            json!({"step_id": step["id"], "model": "m", "provider": "p",
            "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.5", "latency_ms": 9}),
        )
        .await;
        post_ok(
            &app,
            &format!("/v1/runs/{run}/artifacts"),
            json!({"artifact_type": "file", "url": "https://x/y"}),
        )
        .await;
    }
    for table in ["run_steps", "llm_calls", "run_artifacts"] {
        assert!(
            count_rows(&app, table, &id).await > 0,
            "{table} has rows before the delete"
        );
    }

    let (del_status, _) = call(&app, Method::DELETE, &format!("/v1/runs/{id}"), None).await;
    assert_eq!(del_status, 204);
    for child in ["", "/steps", "/llm-calls", "/artifacts", "/stats"] {
        let res = app
            .with(Method::GET, &format!("/v1/runs/{id}{child}"), &app.owner_key)
            .send()
            .await
            .unwrap();
        assert_error(res, 404, "not_found").await;
    }
    for table in ["run_steps", "llm_calls", "run_artifacts"] {
        assert_eq!(
            count_rows(&app, table, &id).await,
            0,
            "{table} has no rows of the deleted run"
        );
    }
    assert_eq!(
        count_rows(&app, "run_steps", &kept_id).await,
        2,
        "the other run keeps its steps"
    );
    assert_eq!(count_rows(&app, "llm_calls", &kept_id).await, 2);
    assert_eq!(count_rows(&app, "run_artifacts", &kept_id).await, 1);
    let (_, stats) = call(&app, Method::GET, &format!("/v1/runs/{kept_id}/stats"), None).await;
    assert_eq!(decimal(&stats["total_cost_usd"]), "0.75", "{stats}");
    let (_, usage) = call(&app, Method::GET, "/v1/usage", None).await;
    assert_eq!(
        usage["total"]["llm_calls"], 2,
        "usage no longer counts the deleted run's calls: {usage}"
    );
}

#[tokio::test]
async fn an_indexed_run_is_found_by_search_and_unindexed_when_deleted() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "past-runs"})).await;
    let filler = [
        "What is the lunch menu in the cafeteria today?",
        "Book a meeting room for the quarterly planning session.",
        "Summarize the new parental leave policy for employees.",
    ];
    let mut others = vec![];
    for text in filler {
        others.push(
            create_run(
                &app,
                json!({"actor": "a", "request_payload": {"question": text},
            "index": {"collection": "past-runs", "text_field": "question"}}),
            )
            .await,
        );
    }
    let question = "How do I reset the password of the office wifi router?";
    let run = create_run(
        &app,
        json!({"actor": "helpdesk", "request_payload": {"question": question, "ticket": 17},
        "index": {"collection": "past-runs", "text_field": "question"}, "metadata": {"team": "it"}}),
    )
    .await;
    let pointer = create_run(
        &app,
        json!({"actor": "a", "request_payload": {"deep": {"q": "Where are the spare printer toner cartridges stored?"}},
        "index": {"collection": "past-runs", "text_field": "/deep/q"}}),
    )
    .await;
    let id = run["id"].as_str().unwrap().to_string();

    let (_, doc) = call(
        &app,
        Method::GET,
        &format!("/v1/collections/past-runs/documents/{id}"),
        None,
    )
    .await;
    let (_, pointed) = call(
        &app,
        Method::GET,
        &format!(
            "/v1/collections/past-runs/documents/{}",
            pointer["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let (search_status, found) = call(
        &app,
        Method::POST,
        "/v1/collections/past-runs/search",
        Some(json!({"query": "router wifi password reset", "k": 5})),
    )
    .await;
    let (missing_status, missing) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "a", "request_payload": {"question": "x"},
        "index": {"collection": "no-such-collection", "text_field": "question"}})),
    )
    .await;
    let (no_field_status, no_field) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "a", "request_payload": {"question": "x"},
        "index": {"collection": "past-runs", "text_field": "answer"}})),
    )
    .await;
    let (_, listed) = call(&app, Method::GET, "/v1/runs", None).await;

    assert_eq!(run["indexed_in"], "past-runs", "{run}");
    assert_eq!(doc["id"], id.as_str(), "{doc}");
    assert_eq!(doc["text"], question);
    assert_eq!(
        pointed["text"], "Where are the spare printer toner cartridges stored?",
        "a JSON pointer picks the text: {pointed}"
    );
    assert_eq!(search_status, 200, "{found}");
    assert_eq!(found["hits"][0]["document_id"], id.as_str(), "{found}");
    assert!((400..500).contains(&missing_status), "{missing}");
    assert!((400..500).contains(&no_field_status), "{no_field}");
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        5,
        "refused runs wrote nothing: {listed}"
    );

    let (del_status, _) = call(&app, Method::DELETE, &format!("/v1/runs/{id}"), None).await;
    let gone = app
        .with(
            Method::GET,
            &format!("/v1/collections/past-runs/documents/{id}"),
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    let (_, docs) = call(&app, Method::GET, "/v1/collections/past-runs/documents", None).await;
    let (_, after) = call(
        &app,
        Method::POST,
        "/v1/collections/past-runs/search",
        Some(json!({"query": "router wifi password reset", "k": 5})),
    )
    .await;

    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    let mut left = ids(&docs);
    left.sort();
    let mut want: Vec<String> = others
        .iter()
        .chain([&pointer])
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(left, want, "only the deleted run's document is gone");
    assert!(
        after["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["document_id"] != id.as_str()),
        "{after}"
    );
}

#[tokio::test]
async fn tenant_b_cannot_see_or_touch_tenant_a_runs() {
    let app = spawn_app().await;
    let run = create_run(&app, json!({"actor": "a", "request_payload": {"secret": 1}, "trace_id": "shared-trace", "idempotency_key": "shared-key"})).await;
    let id = run["id"].as_str().unwrap().to_string();
    let llm = post_ok(
        &app,
        &format!("/v1/runs/{id}/llm-calls"),
        json!({"model": "m", "provider": "p",
        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.5", "latency_ms": 1}),
    )
    .await;
    post_ok(
        &app,
        &format!("/v1/runs/{id}/steps"),
        json!({"step_number": 0, "node_name": "n", "status": "pending"}),
    )
    .await;
    post_ok(
        &app,
        &format!("/v1/runs/{id}/artifacts"),
        json!({"artifact_type": "file", "url": "https://x"}),
    )
    .await;
    let b = app.create_tenant("b").await;
    let (_, b_key) = app.create_key(b, "owner").await;

    let attempts = [
        (Method::GET, format!("/v1/runs/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/runs/{id}"),
            Some(json!({"status": "running"})),
        ),
        (Method::GET, format!("/v1/runs/{id}/steps"), None),
        (
            Method::POST,
            format!("/v1/runs/{id}/steps"),
            Some(json!({"step_number": 5, "node_name": "n", "status": "pending"})),
        ),
        (Method::GET, format!("/v1/runs/{id}/llm-calls"), None),
        (
            Method::POST,
            format!("/v1/runs/{id}/llm-calls"),
            Some(json!({"model": "m", "provider": "p",
            "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": "0.5", "latency_ms": 1})),
        ),
        (Method::GET, format!("/v1/runs/{id}/artifacts"), None),
        (
            Method::POST,
            format!("/v1/runs/{id}/artifacts"),
            Some(json!({"artifact_type": "file", "url": "https://x"})),
        ),
        (Method::GET, format!("/v1/runs/{id}/stats"), None),
        (Method::DELETE, format!("/v1/runs/{id}"), None),
    ];
    for (method, path, body) in attempts {
        let mut req = app.with(method.clone(), &path, &b_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let (status, err) = json(res).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    let (_, b_list) = call_as(&app, &b_key, Method::GET, "/v1/runs", None).await;
    let (_, b_usage) = call_as(&app, &b_key, Method::GET, "/v1/usage?group_by=actor", None).await;
    // Keys, trace ids and ids are per tenant: B may use the same ones.
    let (b_status, b_run) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "b", "request_payload": {}, "trace_id": "shared-trace", "idempotency_key": "shared-key"})),
    )
    .await;

    assert!(b_list["data"].as_array().unwrap().is_empty(), "{b_list}");
    assert!(b_usage["data"].as_array().unwrap().is_empty(), "{b_usage}");
    assert_eq!(b_usage["total"]["llm_calls"], 0);
    assert_eq!(
        b_status, 201,
        "B's own run with the same trace id and idempotency key: {b_run}"
    );
    assert_ne!(b_run["id"], run["id"]);

    let (_, a_run) = call(&app, Method::GET, &format!("/v1/runs/{id}"), None).await;
    let (_, a_steps) = call(&app, Method::GET, &format!("/v1/runs/{id}/steps"), None).await;
    let (_, a_calls) = call(&app, Method::GET, &format!("/v1/runs/{id}/llm-calls"), None).await;
    let (_, a_usage) = call(&app, Method::GET, "/v1/usage", None).await;
    assert_eq!(a_run["status"], "queued", "B's patch changed nothing: {a_run}");
    assert_eq!(
        a_run["artifacts"].as_array().unwrap().len(),
        1,
        "B's artifact was not added"
    );
    assert_eq!(a_steps["data"].as_array().unwrap().len(), 1);
    assert_eq!(ids(&a_calls), [llm["id"].as_str().unwrap()]);
    assert_eq!(list_ids(&app, "").await, [id], "A sees only its own run");
    assert_eq!(a_usage["total"]["llm_calls"], 1);
}
