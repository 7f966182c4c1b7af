//! Per-agent state and workflow state of conversations through the HTTP API: versions with
//! If-Match and ETag (one winner among concurrent writers), the workflow's history, resuming a
//! workflow after the server restarts, and erasing everything of one user.

use std::collections::HashSet;
use std::sync::OnceLock;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::conversations::{append, conversation, rows_of};
use crate::api::documents::call;
use crate::api::helpers::{assert_error, json, shared_cluster, spawn_app, test_config, TestApp};
use crate::api::runs::time;

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

#[tokio::test]
async fn agent_state_versions_with_if_match_and_etag() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "c", "user_id": "u"})).await;

    let (s1, e1, v1) = put(
        &app,
        STATE,
        None,
        json!({"state": {"step": 1, "notes": ["a"]}, "workflow_step": "plan"}),
    )
    .await;
    let (g1, ge1, read1) = get(&app, STATE).await;
    let (s2, e2, v2) = put(
        &app,
        STATE,
        Some("1"),
        json!({"state": {"step": 2}, "workflow_step": "act"}),
    )
    .await;
    let (s_stale, _, stale) = put(&app, STATE, Some("1"), json!({"state": {"step": 99}})).await;
    let (g2, ge2, read2) = get(&app, STATE).await;
    let bad_tag = app
        .with(Method::PUT, STATE, &app.owner_key)
        .header("If-Match", "abc")
        .json(&json!({"state": {"step": 98}}))
        .send()
        .await
        .unwrap();
    let array = app
        .with(Method::PUT, STATE, &app.owner_key)
        .json(&json!({"state": [1, 2]}))
        .send()
        .await
        .unwrap();
    let string = app
        .with(Method::PUT, STATE, &app.owner_key)
        .json(&json!({"state": "x"}))
        .send()
        .await
        .unwrap();
    let (_, _, read_after_refusals) = get(&app, STATE).await;
    let (s3, e3, v3) = put(&app, STATE, Some("\"2\""), json!({"state": {"step": 3}})).await;
    let (s4, e4, v4) = put(&app, STATE, Some("W/\"3\""), json!({"state": {"step": 4}})).await;
    let (s5, e5, v5) = put(&app, STATE, None, json!({"state": {}})).await;

    assert_eq!(s1, 201, "created: {v1}");
    assert_eq!(e1.as_deref(), Some("\"1\""), "ETag of version 1");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["conversation_id"], "c");
    assert_eq!(v1["agent_name"], "planner");
    assert_eq!(v1["state"], json!({"step": 1, "notes": ["a"]}));
    assert_eq!(v1["workflow_step"], "plan");
    time(&v1["created_at"]);
    time(&v1["updated_at"]);
    assert_eq!((g1, ge1.as_deref()), (200, Some("\"1\"")), "{read1}");
    assert_eq!(read1, v1, "GET returns what PUT stored");
    assert_eq!(s2, 200, "{v2}");
    assert_eq!(
        (e2.as_deref(), v2["version"].as_i64()),
        (Some("\"2\""), Some(2)),
        "{v2}"
    );
    assert_eq!(v2["state"], json!({"step": 2}), "the state is replaced");
    assert_eq!(v2["workflow_step"], "act");
    assert_eq!(v2["created_at"], v1["created_at"]);
    assert!(time(&v2["updated_at"]) >= time(&v1["updated_at"]));
    assert_eq!(
        (s_stale, stale["code"].as_str()),
        (412, Some("version_conflict")),
        "{stale}"
    );
    assert_eq!((g2, ge2.as_deref()), (200, Some("\"2\"")));
    assert_eq!(
        (read2["state"].clone(), read2["version"].as_i64()),
        (json!({"step": 2}), Some(2)),
        "the stale write changed nothing: {read2}"
    );
    assert_error(bad_tag, 400, "validation_failed").await;
    assert_error(array, 400, "validation_failed").await;
    assert_error(string, 400, "validation_failed").await;
    assert_eq!(read_after_refusals, read2, "the refused writes changed nothing");
    assert_eq!(
        (s3, e3.as_deref(), v3["version"].as_i64()),
        (200, Some("\"3\""), Some(3)),
        "a quoted version: {v3}"
    );
    assert_eq!(
        (s4, e4.as_deref(), v4["version"].as_i64()),
        (200, Some("\"4\""), Some(4)),
        "a weak tag: {v4}"
    );
    assert_eq!(
        (s5, e5.as_deref(), v5["version"].as_i64()),
        (200, Some("\"5\""), Some(5)),
        "no If-Match: unconditional: {v5}"
    );
    assert_eq!(v5["state"], json!({}));

    // Agents have their own states; If-Match on a state that does not exist is a conflict.
    let missing = app
        .with(Method::GET, "/v1/conversations/c/agents/critic/state", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(missing, 404, "not_found").await;
    let (s_none, _, none) = put(
        &app,
        "/v1/conversations/c/agents/critic/state",
        Some("1"),
        json!({"state": {"a": 1}}),
    )
    .await;
    assert_eq!(
        (s_none, none["code"].as_str()),
        (412, Some("version_conflict")),
        "{none}"
    );
    let still_missing = app
        .with(Method::GET, "/v1/conversations/c/agents/critic/state", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(still_missing, 404, "not_found").await;
    let (s_critic, e_critic, critic) = put(
        &app,
        "/v1/conversations/c/agents/critic/state",
        None,
        json!({"state": {"a": 1}}),
    )
    .await;
    assert_eq!(
        (s_critic, e_critic.as_deref(), critic["version"].as_i64()),
        (201, Some("\"1\""), Some(1)),
        "{critic}"
    );
    assert_eq!(critic["workflow_step"], Value::Null);
    let (_, _, planner) = get(&app, STATE).await;
    assert_eq!(planner["version"], 5, "another agent's state is separate: {planner}");
    assert_eq!(rows_of(&app, "agent_states", "c").await, 2);

    let unknown = app
        .with(
            Method::PUT,
            "/v1/conversations/nope/agents/planner/state",
            &app.owner_key,
        )
        .json(&json!({"state": {}}))
        .send()
        .await
        .unwrap();
    assert_error(unknown, 404, "not_found").await;
    let unknown_get = app
        .with(
            Method::GET,
            "/v1/conversations/nope/agents/planner/state",
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    assert_error(unknown_get, 404, "not_found").await;
}

#[tokio::test]
async fn of_concurrent_writers_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "c", "user_id": "u"})).await;
    let (status, _, _) = put(&app, STATE, None, json!({"state": {"writer": -1}})).await;
    assert_eq!(status, 201);

    let attempts = (0..10).map(|i| put(&app, STATE, Some("1"), json!({"state": {"writer": i}})));
    let results = futures_util::future::join_all(attempts).await;
    let (_, _, stored) = get(&app, STATE).await;

    let winners: Vec<_> = results.iter().filter(|(s, _, _)| *s == 200).collect();
    let losers: Vec<_> = results
        .iter()
        .filter(|(s, _, b)| *s == 412 && b["code"] == "version_conflict")
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer wins: {:?}",
        results.iter().map(|(s, _, b)| (s, b.to_string())).collect::<Vec<_>>()
    );
    assert_eq!(losers.len(), 9, "the others get version_conflict");
    assert_eq!(winners[0].2["version"], 2);
    assert_eq!(stored["version"], 2, "{stored}");
    assert_eq!(stored["state"], winners[0].2["state"], "the winner's state is stored");
}

const WORKFLOW: &str = "/v1/conversations/c/workflow";

#[tokio::test]
async fn a_workflow_keeps_its_current_step_and_its_history() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "c", "user_id": "u"})).await;
    conversation(&app, json!({"id": "empty", "user_id": "u"})).await;
    let steps = [
        ("collect", json!({"order": 1182})),
        ("approve", json!({"order": 1182, "amount": "19.99"})),
        ("refund_issued", json!({"order": 1182, "done": true})),
    ];

    let mut saved = vec![];
    for (i, (step, state)) in steps.iter().enumerate() {
        let if_match = (i > 0).then(|| i.to_string());
        let (status, _, body) = put(
            &app,
            WORKFLOW,
            if_match.as_deref(),
            json!({"workflow_type": "refund", "current_step": step, "state": state}),
        )
        .await;
        assert_eq!(status, if i == 0 { 201 } else { 200 }, "step {step}: {body}");
        saved.push(body);
    }
    let (stale_status, _, stale) = put(
        &app,
        WORKFLOW,
        Some("1"),
        json!({"workflow_type": "refund", "current_step": "rewind", "state": {}}),
    )
    .await;
    let (get_status, _, current) = get(&app, WORKFLOW).await;
    let (h_status, _, history) = get(&app, &format!("{WORKFLOW}/history")).await;
    let (_, _, after1) = get(&app, &format!("{WORKFLOW}/history?after=1")).await;
    let (_, _, first2) = get(&app, &format!("{WORKFLOW}/history?limit=2")).await;
    let (_, _, middle) = get(&app, &format!("{WORKFLOW}/history?after=1&limit=1")).await;
    let none = app
        .with(Method::GET, "/v1/conversations/empty/workflow", &app.owner_key)
        .send()
        .await
        .unwrap();
    let unknown = app
        .with(Method::GET, "/v1/conversations/nope/workflow", &app.owner_key)
        .send()
        .await
        .unwrap();
    let unknown_put = app
        .with(Method::PUT, "/v1/conversations/nope/workflow", &app.owner_key)
        .json(&json!({"workflow_type": "t", "current_step": "s", "state": {}}))
        .send()
        .await
        .unwrap();

    let versions = |list: &Value| {
        list["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .map(|h| h["version"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        saved.iter().map(|s| s["version"].as_i64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(saved[0]["conversation_id"], "c");
    assert_eq!(saved[0]["workflow_type"], "refund");
    assert_eq!(saved[0]["created_at"], saved[2]["created_at"]);
    assert_eq!(
        (stale_status, stale["code"].as_str()),
        (412, Some("version_conflict")),
        "{stale}"
    );
    assert_eq!(get_status, 200, "{current}");
    assert_eq!(current["current_step"], "refund_issued", "the last step: {current}");
    assert_eq!(current["state"], steps[2].1);
    assert_eq!(current["version"], 3);
    assert_eq!(current["workflow_type"], "refund");
    time(&current["updated_at"]);
    assert_eq!(h_status, 200, "{history}");
    assert_eq!(
        versions(&history),
        [1, 2, 3],
        "ascending by version, the stale write added nothing: {history}"
    );
    for (h, (step, state)) in history["data"].as_array().unwrap().iter().zip(&steps) {
        assert_eq!(h["current_step"], *step, "{h}");
        assert_eq!(h["state"], *state);
        assert_eq!(h["workflow_type"], "refund");
        time(&h["saved_at"]);
    }
    let saved_at: Vec<_> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| time(&h["saved_at"]))
        .collect();
    assert!(saved_at.windows(2).all(|w| w[0] <= w[1]), "{history}");
    assert_eq!(versions(&after1), [2, 3]);
    assert_eq!(versions(&first2), [1, 2]);
    assert_eq!(versions(&middle), [2]);
    assert_error(none, 404, "not_found").await;
    assert_error(unknown, 404, "not_found").await;
    assert_error(unknown_put, 404, "not_found").await;
    for body in [
        json!({"workflow_type": "", "current_step": "s", "state": {}}),
        json!({"workflow_type": "t".repeat(129), "current_step": "s", "state": {}}),
        json!({"workflow_type": "t", "current_step": "", "state": {}}),
        json!({"workflow_type": "t", "current_step": "s".repeat(257), "state": {}}),
        json!({"workflow_type": "t", "current_step": "s", "state": [1]}),
        json!({"workflow_type": "t", "current_step": "s"}),
    ] {
        let res = app
            .with(Method::PUT, WORKFLOW, &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            ["validation_failed", "invalid_request"].contains(&err["code"].as_str().unwrap_or("")),
            "{err}"
        );
    }
    let bad_tag = app
        .with(Method::PUT, WORKFLOW, &app.owner_key)
        .header("If-Match", "three")
        .json(&json!({"workflow_type": "t", "current_step": "s", "state": {}}))
        .send()
        .await
        .unwrap();
    assert_error(bad_tag, 400, "validation_failed").await;
    assert_eq!(
        rows_of(&app, "workflow_history", "c").await,
        3,
        "refused writes add no history"
    );
}

/// The model for apps this file starts itself (loaded once).
fn embedder() -> onebase::embed::Embedder {
    static EMBEDDER: OnceLock<onebase::embed::Embedder> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            onebase::embed::Embedder::load(test_config().embed_config()).expect("the embedding model loads")
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

#[tokio::test]
async fn a_workflow_resumes_after_a_server_restart() {
    let cluster = shared_cluster();
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = onebase::pg::connect_once(&cluster.client_config("postgres"))
        .await
        .unwrap();
    onebase::pg::ensure_database(&admin, &db_name).await.unwrap();
    let client = reqwest::Client::new();
    let send = |address: &str, key: &str, method: Method, path: &str, if_match: Option<&str>, body: Option<Value>| {
        let mut req = client.request(method, format!("{address}{path}")).bearer_auth(key);
        if let Some(v) = if_match {
            req = req.header("If-Match", v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { json(req.send().await.unwrap()).await }
    };

    let (first, handle, key) = start(&db_name).await;
    let key = key.expect("a fresh database has a first run");
    let (status, conv) = send(
        &first,
        &key,
        Method::POST,
        "/v1/conversations",
        None,
        Some(json!({"id": "sess-9", "user_id": "u"})),
    )
    .await;
    assert_eq!(status, 201, "{conv}");
    for (i, step) in ["intake", "triage", "waiting_for_customer"].iter().enumerate() {
        let if_match = (i > 0).then(|| i.to_string());
        let (status, body) = send(
            &first,
            &key,
            Method::PUT,
            "/v1/conversations/sess-9/workflow",
            if_match.as_deref(),
            Some(
                json!({"workflow_type": "support", "current_step": step, "state": {"step_index": i, "ticket": "T-7"}}),
            ),
        )
        .await;
        assert!(status == 200 || status == 201, "{body}");
    }
    let (status, body) = send(
        &first,
        &key,
        Method::PUT,
        "/v1/conversations/sess-9/agents/triager/state",
        None,
        Some(json!({"state": {"priority": "high"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    handle.stop(true).await;
    let stopped = client
        .get(format!("{first}/v1/conversations/sess-9/workflow"))
        .bearer_auth(&key)
        .send()
        .await;
    assert!(stopped.is_err(), "the first server is down");

    let (second, handle2, again) = start(&db_name).await;
    assert!(again.is_none(), "the same database: not a first run");
    let (wf_status, workflow) = send(
        &second,
        &key,
        Method::GET,
        "/v1/conversations/sess-9/workflow",
        None,
        None,
    )
    .await;
    let (h_status, history) = send(
        &second,
        &key,
        Method::GET,
        "/v1/conversations/sess-9/workflow/history",
        None,
        None,
    )
    .await;
    let (state_status, state) = send(
        &second,
        &key,
        Method::GET,
        "/v1/conversations/sess-9/agents/triager/state",
        None,
        None,
    )
    .await;
    let (next_status, next) = send(&second, &key, Method::PUT, "/v1/conversations/sess-9/workflow", Some("3"),
        Some(json!({"workflow_type": "support", "current_step": "resolved", "state": {"step_index": 3, "ticket": "T-7"}}))).await;
    handle2.stop(true).await;

    assert_eq!(wf_status, 200, "{workflow}");
    assert_eq!(
        workflow["current_step"], "waiting_for_customer",
        "the workflow resumes where it was: {workflow}"
    );
    assert_eq!(workflow["state"], json!({"step_index": 2, "ticket": "T-7"}));
    assert_eq!(workflow["version"], 3);
    assert_eq!(h_status, 200, "{history}");
    let steps: Vec<_> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["current_step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["intake", "triage", "waiting_for_customer"]);
    assert_eq!(
        (state_status, state["state"].clone(), state["version"].as_i64()),
        (200, json!({"priority": "high"}), Some(1)),
        "{state}"
    );
    assert_eq!(
        (next_status, next["version"].as_i64()),
        (200, Some(4)),
        "the next step continues the versions: {next}"
    );
}

const SECRET_WORDS: [&str; 4] = [
    "tangerine-password",
    "my card number is 4111",
    "bank account of ACME",
    "secret-state-value",
];

#[tokio::test]
async fn erasing_a_user_removes_all_their_data_and_only_theirs() {
    let app = spawn_app().await;
    for (id, user) in [("u1-a", "u1"), ("u1-b", "u1"), ("u2-a", "u2")] {
        conversation(&app, json!({"id": id, "user_id": user, "embed_messages": true})).await;
    }
    append(
        &app,
        "u1-a",
        json!({"messages": [
        {"role": "user", "content": format!("Remember {}", SECRET_WORDS[0])},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": SECRET_WORDS[1]}]}),
    )
    .await;
    append(
        &app,
        "u1-b",
        json!({"messages": [{"role": "user", "content": SECRET_WORDS[2]}, {"role": "assistant", "content": "Ok."}]}),
    )
    .await;
    append(&app, "u2-a", json!({"messages": [{"role": "user", "content": "u2 says hello"}, {"role": "assistant", "content": "hello u2"}]})).await;
    for (conv, agent) in [
        ("u1-a", "planner"),
        ("u1-a", "critic"),
        ("u1-b", "planner"),
        ("u2-a", "planner"),
    ] {
        let (status, body) = call(
            &app,
            Method::PUT,
            &format!("/v1/conversations/{conv}/agents/{agent}/state"),
            Some(json!({"state": {"v": SECRET_WORDS[3]}})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for (conv, n) in [("u1-a", 3), ("u2-a", 2)] {
        for i in 0..n {
            let (status, body) = call(
                &app,
                Method::PUT,
                &format!("/v1/conversations/{conv}/workflow"),
                Some(json!({"workflow_type": "w", "current_step": format!("s{i}"), "state": {"v": SECRET_WORDS[3]}})),
            )
            .await;
            assert!(status == 200 || status == 201, "{body}");
        }
    }
    let u2_before = user_rows(&app, "u2", &["u2-a"]).await;

    let (status, erased) = call(&app, Method::DELETE, "/v1/users/u1/data", None).await;

    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["user_id"], "u1");
    let counts = [
        ("conversations", 2),
        ("messages", 5),
        ("agent_states", 3),
        ("workflows", 1),
        ("workflow_history", 3),
    ];
    for (field, n) in counts {
        assert_eq!(erased[field], n, "{field}: {erased}");
    }
    assert_eq!(
        user_rows(&app, "u1", &["u1-a", "u1-b"]).await,
        [0, 0, 0, 0, 0],
        "nothing of u1 is left"
    );
    assert_eq!(u2_before, [1, 2, 1, 1, 2]);
    assert_eq!(
        user_rows(&app, "u2", &["u2-a"]).await,
        u2_before,
        "u2's rows are all there"
    );
    let gone = app
        .with(Method::GET, "/v1/conversations/u1-a", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "not_found").await;
    let (_, listed) = call(&app, Method::GET, "/v1/conversations?user_id=u1", None).await;
    assert_eq!(listed["data"], json!([]), "{listed}");
    let (_, found) = call(
        &app,
        Method::POST,
        "/v1/messages/search",
        Some(json!({"query": "password", "user_id": "u1"})),
    )
    .await;
    assert_eq!(found["data"], json!([]), "{found}");
    let (_, u2_found) = call(
        &app,
        Method::POST,
        "/v1/messages/search",
        Some(json!({"query": "hello", "user_id": "u2"})),
    )
    .await;
    assert_eq!(u2_found["data"].as_array().map(Vec::len), Some(2), "{u2_found}");

    // The audit row: the counts, no content.
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT tenant_id, details::text, coalesce(resource_id, '') FROM audit_log WHERE action = 'user.erase'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one audit row for the erasure");
    let tenant: uuid::Uuid = rows[0].get(0);
    let details_text: String = rows[0].get(1);
    let resource: String = rows[0].get(2);
    assert_eq!(tenant, app.default_tenant);
    let details: Value = serde_json::from_str(&details_text).unwrap();
    for (field, n) in counts {
        assert_eq!(
            find_key(&details, field),
            Some(&json!(n)),
            "the audit details carry the {field} count: {details}"
        );
    }
    for secret in SECRET_WORDS.iter().chain(&["Noted.", "Remember"]) {
        assert!(
            !details_text.contains(secret),
            "no content in the audit row: {details_text}"
        );
        assert!(!resource.contains(secret));
    }

    // Again: nothing left to erase; an unknown user has nothing either.
    let (again_status, again) = call(&app, Method::DELETE, "/v1/users/u1/data", None).await;
    let (_, stranger) = call(&app, Method::DELETE, "/v1/users/nobody/data", None).await;
    assert_eq!(again_status, 200, "{again}");
    for (field, _) in counts {
        assert_eq!(
            (again[field].as_i64(), stranger[field].as_i64()),
            (Some(0), Some(0)),
            "{field}: {again} {stranger}"
        );
    }
    assert_eq!(user_rows(&app, "u2", &["u2-a"]).await, u2_before);
    let convs: HashSet<String> = client
        .query("SELECT id FROM conversations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(convs, HashSet::from(["u2-a".to_string()]));
}

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
