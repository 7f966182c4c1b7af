//! A run from creation to deletion: reads, lists, idempotent creation, status transitions.

use super::*;
use crate::api::helpers::{call, decimal, q, rfc3339, time};

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
