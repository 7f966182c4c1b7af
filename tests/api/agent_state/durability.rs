//! A workflow across a server restart, and a user's erasure.

use super::*;

#[tokio::test]
async fn a_workflow_resumes_after_a_server_restart() {
    let cluster = shared_cluster();
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = onebase::db::connect_once(&cluster.client_config("postgres"))
        .await
        .unwrap();
    onebase::db::ensure_database(&admin, &db_name).await.unwrap();
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
