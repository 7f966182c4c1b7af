//! Erasure, conversation retention, roles and tenant isolation for memories.

use super::*;

#[tokio::test]
async fn erasing_a_user_removes_their_memories_and_history_and_only_theirs() {
    let app = spawn_app_with(|c| c.memory_dedupe_threshold = 0.8).await;
    let kept_fact = added(&app, json!({"content": FACTS[2].0, "user_id": "u1"})).await;
    let updated = added(&app, json!({"content": PEANUTS, "user_id": "u1"})).await;
    let (status, upd) = add(&app, json!({"content": PEANUTS_PARAPHRASE, "user_id": "u1"})).await;
    assert_eq!((status, upd["event"].as_str()), (200, Some("updated")), "{upd}");
    let deleted = added(&app, json!({"content": WINDOW, "user_id": "u1"})).await;
    let (del, _) = call(&app, Method::DELETE, &format!("/v1/memories/{}", id_of(&deleted)), None).await;
    assert_eq!(del, 204);
    let with_agent = added(
        &app,
        json!({"content": FACTS[3].0, "user_id": "u1", "agent_id": "planner"}),
    )
    .await;
    let u2 = added(&app, json!({"content": PEANUTS, "user_id": "u2"})).await;
    let agent_only = added(&app, json!({"content": FACTS[4].0, "agent_id": "planner"})).await;
    conversation(&app, json!({"id": "u1-chat", "user_id": "u1"})).await;
    // u1: 3 live memories; history 1 + 2 + 2 + 1 = 6 rows.
    assert_eq!(
        (
            user_rows(&app, "memories", "u1").await,
            user_rows(&app, "memory_history", "u1").await
        ),
        (3, 6)
    );

    let (status, erased) = call(&app, Method::DELETE, "/v1/users/u1/data", None).await;

    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        (erased["memories"].as_i64(), erased["memory_history"].as_i64()),
        (Some(3), Some(6)),
        "{erased}"
    );
    assert_eq!(erased["conversations"], 1, "{erased}");
    assert_eq!(user_rows(&app, "memories", "u1").await, 0, "no memory of u1 is left");
    assert_eq!(
        user_rows(&app, "memory_history", "u1").await,
        0,
        "no history of u1 is left"
    );
    for m in [&kept_fact, &updated, &deleted, &with_agent] {
        let res = app
            .with(
                Method::GET,
                &format!("/v1/memories/{}/history", id_of(m)),
                &app.owner_key,
            )
            .send()
            .await
            .unwrap();
        assert_error(res, 404, "not_found").await;
    }
    let gone = app
        .with(
            Method::GET,
            &format!("/v1/memories/{}", id_of(&kept_fact)),
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "not_found").await;
    let listed = get_ok(&app, "/v1/memories?user_id=u1").await;
    let found = search(&app, json!({"query": "food allergies", "user_id": "u1"})).await;
    assert_eq!((listed["data"].clone(), found["data"].clone()), (json!([]), json!([])));
    // Everyone else's remain.
    assert_eq!(
        (
            user_rows(&app, "memories", "u2").await,
            user_rows(&app, "memory_history", "u2").await
        ),
        (1, 1)
    );
    assert_eq!(get_ok(&app, &format!("/v1/memories/{}", id_of(&u2))).await, u2);
    assert_eq!(
        get_ok(&app, &format!("/v1/memories/{}", id_of(&agent_only))).await,
        agent_only
    );
    assert_eq!(
        events(&get_ok(&app, &format!("/v1/memories/{}/history", id_of(&u2))).await),
        pairs(&[("add", "request")])
    );
    let u2_found = search(&app, json!({"query": "food allergies", "user_id": "u2"})).await;
    assert_eq!(contents(&u2_found), [PEANUTS]);

    // The audit row has the counts, not the content.
    let client = app.pool.get().await.unwrap();
    let details: String = client
        .query_one("SELECT details::text FROM audit_log WHERE action = 'user.erase'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        details.contains("\"memories\": 3") || details.contains("\"memories\":3"),
        "{details}"
    );
    for secret in [PEANUTS, PEANUTS_PARAPHRASE, "peanut", "Lisbon"] {
        assert!(!details.contains(secret), "no content in the audit row: {details}");
    }
    let (_, again) = call(&app, Method::DELETE, "/v1/users/u1/data", None).await;
    assert_eq!(
        (again["memories"].as_i64(), again["memory_history"].as_i64()),
        (Some(0), Some(0)),
        "{again}"
    );
}

#[tokio::test]
async fn the_sweep_deletes_conversations_past_the_tenants_retention() {
    let app = spawn_app_with(|c| c.sweep_interval_secs = 1.0).await;
    for id in ["old", "fresh", "revived"] {
        conversation(&app, json!({"id": id, "user_id": "u1"})).await;
    }
    append(
        &app,
        "old",
        json!({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}),
    )
    .await;
    let (state_status, _) = call(
        &app,
        Method::PUT,
        "/v1/conversations/old/workflow",
        Some(json!({"workflow_type": "w", "current_step": "s", "state": {}})),
    )
    .await;
    assert_eq!(state_status, 201);
    let b = app.create_tenant("b").await;
    let (_, b_key) = app.create_key(b, "owner").await;
    let (b_status, b_conv) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/conversations",
        Some(json!({"id": "b-old", "user_id": "u1"})),
    )
    .await;
    assert_eq!(b_status, 201, "{b_conv}");
    let client = app.pool.get().await.unwrap();
    let backdated = client
        .execute(
            "UPDATE conversations SET updated_at = now() - interval '2 days' WHERE id IN ('old', 'revived', 'b-old')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(backdated, 3);
    // A message moves updated_at on; with no retention set nothing is deleted yet.
    append(&app, "revived", json!({"role": "user", "content": "back again"})).await;
    let revived_at: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT updated_at FROM conversations WHERE id = 'revived'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        chrono::Utc::now() - revived_at < chrono::Duration::minutes(1),
        "an append moves updated_at: {revived_at}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get_ok(&app, "/v1/conversations/old").await["id"],
        "old",
        "no retention setting: kept"
    );

    let res = app
        .with(
            Method::PATCH,
            &format!("/v1/tenants/{}", app.default_tenant),
            &app.owner_key,
        )
        .json(&json!({"settings": {"retention": {"conversations_days": 1}}}))
        .send()
        .await
        .unwrap();
    let (status, tenant) = json(res).await;
    assert_eq!(status, 200, "{tenant}");
    let start = Instant::now();
    loop {
        let (status, body) = call(&app, Method::GET, "/v1/conversations/old", None).await;
        if status == 404 {
            assert_eq!(body["code"], "not_found");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the sweep did not delete the old conversation in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(
        get_ok(&app, "/v1/conversations/fresh").await["id"],
        "fresh",
        "a recent conversation stays"
    );
    assert_eq!(
        get_ok(&app, "/v1/conversations/revived").await["message_count"],
        1,
        "updated_at moved on: it stays"
    );
    let (b_status, b_read) = call_as(&app, &b_key, Method::GET, "/v1/conversations/b-old", None).await;
    assert_eq!(
        b_status, 200,
        "another tenant without the setting keeps its old conversation: {b_read}"
    );
    for table in ["messages", "workflows", "workflow_history"] {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE conversation_id = 'old'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} rows went with the conversation");
    }
}

#[tokio::test]
async fn tenant_b_cannot_see_or_touch_tenant_a_memories() {
    let app = spawn_app().await;
    let memory = added(
        &app,
        json!({"content": PEANUTS, "user_id": "alice", "metadata": {"category": "health"}}),
    )
    .await;
    let id = id_of(&memory);
    conversation(&app, json!({"id": "sess-1", "user_id": "alice"})).await;
    append(&app, "sess-1", json!({"role": "user", "content": "What can I eat?"})).await;
    let b = app.create_tenant("b").await;
    let (_, b_key) = app.create_key(b, "owner").await;

    let attempts = [
        (Method::GET, format!("/v1/memories/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/memories/{id}"),
            Some(json!({"content": "The user loves peanuts."})),
        ),
        (Method::DELETE, format!("/v1/memories/{id}"), None),
        (Method::GET, format!("/v1/memories/{id}/history"), None),
        (
            Method::POST,
            "/v1/conversations/sess-1/context".to_string(),
            Some(json!({"query": "food allergies", "memories": {}})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, err) = call_as(&app, &b_key, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    let (_, b_search) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/memories/search",
        Some(json!({"query": "food allergies", "user_id": "alice"})),
    )
    .await;
    let (_, b_list) = call_as(&app, &b_key, Method::GET, "/v1/memories?user_id=alice", None).await;
    let (_, b_all) = call_as(&app, &b_key, Method::GET, "/v1/memories", None).await;
    let (_, b_erase) = call_as(&app, &b_key, Method::DELETE, "/v1/users/alice/data", None).await;
    // Dedupe is per tenant: B's alice gets her own memory.
    let (b_add, b_memory) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/memories",
        Some(json!({"content": PEANUTS, "user_id": "alice"})),
    )
    .await;

    assert_eq!(b_search["data"], json!([]), "{b_search}");
    assert_eq!(b_list["data"], json!([]), "{b_list}");
    assert_eq!(b_all["data"], json!([]), "{b_all}");
    assert_eq!(
        (b_erase["memories"].as_i64(), b_erase["memory_history"].as_i64()),
        (Some(0), Some(0)),
        "{b_erase}"
    );
    assert_eq!((b_add, b_memory["event"].as_str()), (201, Some("added")), "{b_memory}");
    assert_ne!(id_of(&b_memory["memory"]), id);

    assert_eq!(
        get_ok(&app, &format!("/v1/memories/{id}")).await,
        memory,
        "B changed nothing"
    );
    let history = get_ok(&app, &format!("/v1/memories/{id}/history")).await;
    assert_eq!(events(&history), pairs(&[("add", "request")]), "{history}");
    let a_found = search(&app, json!({"query": "food allergies", "user_id": "alice"})).await;
    assert_eq!(
        a_found["data"].as_array().map(Vec::len),
        Some(1),
        "A sees only its own: {a_found}"
    );
    assert_eq!(id_of(&a_found["data"][0]["memory"]), id);
    let (_, ctx) = call(
        &app,
        Method::POST,
        "/v1/conversations/sess-1/context",
        Some(json!({"query": "food allergies", "memories": {}})),
    )
    .await;
    assert_eq!(
        ctx["memories"]
            .as_array()
            .map(|m| m.iter().map(|h| id_of(&h["memory"])).collect::<Vec<_>>()),
        Some(vec![id.clone()]),
        "{ctx}"
    );
    let (_, b_own) = call_as(
        &app,
        &b_key,
        Method::GET,
        &format!("/v1/memories/{}", id_of(&b_memory["memory"])),
        None,
    )
    .await;
    assert_eq!(b_own["user_id"], "alice", "B reads its own: {b_own}");
}

#[tokio::test]
async fn readers_read_memories_writers_write_them_and_the_admin_key_is_refused() {
    let app = spawn_app().await;
    let memory = added(&app, json!({"content": PEANUTS, "user_id": "u1"})).await;
    let id = id_of(&memory);
    conversation(&app, json!({"id": "c", "user_id": "u1"})).await;
    let (_, reader) = app.create_key(app.default_tenant, "reader").await;
    let (_, writer) = app.create_key(app.default_tenant, "writer").await;

    let reads = [
        (Method::GET, format!("/v1/memories/{id}"), None),
        (Method::GET, "/v1/memories?user_id=u1".to_string(), None),
        (Method::GET, format!("/v1/memories/{id}/history"), None),
        (
            Method::POST,
            "/v1/memories/search".to_string(),
            Some(json!({"query": "allergy", "user_id": "u1"})),
        ),
        (
            Method::POST,
            "/v1/conversations/c/context".to_string(),
            Some(json!({"query": "allergy", "memories": {}})),
        ),
    ];
    for (method, path, body) in reads.clone() {
        let (status, res) = call_as(&app, &reader, method.clone(), &path, body).await;
        assert_eq!(status, 200, "a reader may {method} {path}: {res}");
    }
    let writes = [
        (
            Method::POST,
            "/v1/memories".to_string(),
            Some(json!({"content": WINDOW, "user_id": "u1"})),
        ),
        (
            Method::PATCH,
            format!("/v1/memories/{id}"),
            Some(json!({"metadata": {"x": 1}})),
        ),
        (Method::DELETE, format!("/v1/memories/{id}"), None),
    ];
    for (method, path, body) in writes.clone() {
        let (status, err) = call_as(&app, &reader, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("forbidden")),
            "a reader may not {method} {path}: {err}"
        );
    }
    for (method, path, body) in reads.into_iter().chain(writes) {
        let (status, err) = call_as(&app, crate::api::helpers::ADMIN_KEY, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("forbidden")),
            "the admin key on {method} {path}: {err}"
        );
    }
    assert_eq!(
        get_ok(&app, &format!("/v1/memories/{id}")).await,
        memory,
        "nothing was written"
    );
    let (status, written) = call_as(
        &app,
        &writer,
        Method::POST,
        "/v1/memories",
        Some(json!({"content": WINDOW, "user_id": "u1"})),
    )
    .await;
    assert_eq!(
        (status, written["event"].as_str()),
        (201, Some("added")),
        "a writer adds: {written}"
    );
    let (status, _) = call_as(&app, &writer, Method::DELETE, &format!("/v1/memories/{id}"), None).await;
    assert_eq!(status, 204, "a writer deletes");
}
