//! Input the runs plane refuses, and what one tenant cannot see of another.

use super::*;
use crate::api::helpers::{call, call_as, decimal};

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
