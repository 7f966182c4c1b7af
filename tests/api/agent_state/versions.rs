//! Agent state and workflows: versions with If-Match and ETag, concurrent writers, history.

use super::*;

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
