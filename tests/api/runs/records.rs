//! What a run records: steps, artifacts, LLM calls, and the stats and usage summed from them.

use super::*;
use crate::api::helpers::{call, collection, decimal, q, rfc3339, time};

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
