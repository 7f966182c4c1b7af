//! Who may read and write conversations: roles, the admin key, and other tenants.

use super::*;
use crate::api::helpers::{append, call, call_as, conversation, q};

#[tokio::test]
async fn readers_read_writers_write_and_the_admin_key_is_refused() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "c", "user_id": "u", "embed_messages": true})).await;
    let m = append(&app, "c", json!({"role": "user", "content": "hello"}))
        .await
        .remove(0);
    let (_, reader) = app.create_key(app.default_tenant, "reader").await;
    let (_, writer) = app.create_key(app.default_tenant, "writer").await;
    let mid = m["id"].as_str().unwrap();

    let reads = [
        (Method::GET, "/v1/conversations/c".to_string(), None),
        (Method::GET, "/v1/conversations?user_id=u".to_string(), None),
        (Method::GET, "/v1/conversations/c/messages".to_string(), None),
        (
            Method::POST,
            "/v1/conversations/c/messages/search".to_string(),
            Some(json!({"query": "hi"})),
        ),
        (
            Method::POST,
            "/v1/messages/search".to_string(),
            Some(json!({"query": "hi", "user_id": "u"})),
        ),
    ];
    for (method, path, body) in reads.clone() {
        let (status, res) = call_as(&app, &reader, method.clone(), &path, body).await;
        assert_eq!(status, 200, "a reader may {method} {path}: {res}");
    }
    let writes = [
        (
            Method::POST,
            "/v1/conversations".to_string(),
            Some(json!({"user_id": "u"})),
        ),
        (
            Method::PATCH,
            "/v1/conversations/c".to_string(),
            Some(json!({"title": "t"})),
        ),
        (
            Method::POST,
            "/v1/conversations/c/messages".to_string(),
            Some(json!({"role": "user", "content": "x"})),
        ),
        (
            Method::PATCH,
            format!("/v1/conversations/c/messages/{mid}"),
            Some(json!({"rating": 1})),
        ),
        (
            Method::PUT,
            "/v1/conversations/c/agents/a/state".to_string(),
            Some(json!({"state": {}})),
        ),
        (
            Method::PUT,
            "/v1/conversations/c/workflow".to_string(),
            Some(json!({"workflow_type": "t", "current_step": "s", "state": {}})),
        ),
        (Method::DELETE, "/v1/conversations/c".to_string(), None),
        (Method::DELETE, "/v1/users/u/data".to_string(), None),
    ];
    for (method, path, body) in writes.clone() {
        let (status, err) = call_as(&app, &reader, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("forbidden")),
            "a reader may not {method} {path}: {err}"
        );
    }
    let (status, err) = call_as(&app, &writer, Method::DELETE, "/v1/users/u/data", None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("forbidden")),
        "erasure is for owners: {err}"
    );
    let (status, created) = call_as(
        &app,
        &writer,
        Method::POST,
        "/v1/conversations/c/messages",
        Some(json!({"role": "user", "content": "from a writer"})),
    )
    .await;
    assert_eq!(status, 201, "a writer appends: {created}");
    for (method, path, body) in reads.into_iter().chain(writes) {
        let (status, err) = call_as(&app, ADMIN_KEY, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("forbidden")),
            "the admin key on {method} {path}: {err}"
        );
    }
    let (_, conv) = call(&app, Method::GET, "/v1/conversations/c", None).await;
    assert_eq!(
        (conv["title"].clone(), conv["message_count"].as_i64()),
        (Value::Null, Some(2)),
        "only the writer's append happened: {conv}"
    );
}

#[tokio::test]
async fn tenant_b_cannot_see_or_touch_tenant_a_conversations() {
    let app = spawn_app().await;
    conversation(
        &app,
        json!({"id": "sess-1", "user_id": "alice", "embed_messages": true, "metadata": {"channel_kind": "web"}}),
    )
    .await;
    let m = append(
        &app,
        "sess-1",
        json!({"role": "user", "content": "My flight to Berlin was delayed by three hours."}),
    )
    .await
    .remove(0);
    let mid = m["id"].as_str().unwrap().to_string();
    let (s1, _) = call(
        &app,
        Method::PUT,
        "/v1/conversations/sess-1/agents/planner/state",
        Some(json!({"state": {"secret": 1}})),
    )
    .await;
    let (s2, _) = call(
        &app,
        Method::PUT,
        "/v1/conversations/sess-1/workflow",
        Some(json!({"workflow_type": "w", "current_step": "one", "state": {"secret": 1}})),
    )
    .await;
    assert_eq!((s1, s2), (201, 201));
    let b = app.create_tenant("b").await;
    let (_, b_key) = app.create_key(b, "owner").await;

    let attempts = [
        (Method::GET, "/v1/conversations/sess-1".to_string(), None),
        (
            Method::PATCH,
            "/v1/conversations/sess-1".to_string(),
            Some(json!({"title": "mine"})),
        ),
        (Method::GET, "/v1/conversations/sess-1/messages".to_string(), None),
        (
            Method::POST,
            "/v1/conversations/sess-1/messages".to_string(),
            Some(json!({"role": "user", "content": "intruder"})),
        ),
        (
            Method::PATCH,
            format!("/v1/conversations/sess-1/messages/{mid}"),
            Some(json!({"rating": -100})),
        ),
        (
            Method::POST,
            "/v1/conversations/sess-1/messages/search".to_string(),
            Some(json!({"query": "flight delay"})),
        ),
        (
            Method::GET,
            "/v1/conversations/sess-1/agents/planner/state".to_string(),
            None,
        ),
        (
            Method::PUT,
            "/v1/conversations/sess-1/agents/planner/state".to_string(),
            Some(json!({"state": {"secret": 2}})),
        ),
        (Method::GET, "/v1/conversations/sess-1/workflow".to_string(), None),
        (
            Method::PUT,
            "/v1/conversations/sess-1/workflow".to_string(),
            Some(json!({"workflow_type": "w", "current_step": "two", "state": {}})),
        ),
        (
            Method::GET,
            "/v1/conversations/sess-1/workflow/history".to_string(),
            None,
        ),
        (Method::DELETE, "/v1/conversations/sess-1".to_string(), None),
    ];
    for (method, path, body) in attempts {
        let (status, err) = call_as(&app, &b_key, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    let (_, b_by_user) = call_as(&app, &b_key, Method::GET, "/v1/conversations?user_id=alice", None).await;
    let (_, b_all) = call_as(
        &app,
        &b_key,
        Method::GET,
        &format!("/v1/conversations?filter={}", q(r#"{"channel_kind": "web"}"#)),
        None,
    )
    .await;
    let (_, b_search) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/messages/search",
        Some(json!({"query": "flight delay", "user_id": "alice"})),
    )
    .await;
    let (erase_status, b_erase) = call_as(&app, &b_key, Method::DELETE, "/v1/users/alice/data", None).await;
    // Ids are per tenant: B may have its own sess-1.
    let (b_create, b_conv) = call_as(
        &app,
        &b_key,
        Method::POST,
        "/v1/conversations",
        Some(json!({"id": "sess-1", "user_id": "bob"})),
    )
    .await;

    assert_eq!(b_by_user["data"], json!([]), "{b_by_user}");
    assert_eq!(b_all["data"], json!([]), "{b_all}");
    assert_eq!(b_search["data"], json!([]), "{b_search}");
    assert_eq!(erase_status, 200, "{b_erase}");
    for field in [
        "conversations",
        "messages",
        "agent_states",
        "workflows",
        "workflow_history",
    ] {
        assert_eq!(
            b_erase[field], 0,
            "B's erasure of alice removes nothing of A's: {b_erase}"
        );
    }
    assert_eq!(b_create, 201, "{b_conv}");
    assert_eq!(b_conv["user_id"], "bob");

    let (_, a_conv) = call(&app, Method::GET, "/v1/conversations/sess-1", None).await;
    let a_msgs = page(&app, "sess-1", "").await;
    let (_, a_state) = call(&app, Method::GET, "/v1/conversations/sess-1/agents/planner/state", None).await;
    let (_, a_wf) = call(&app, Method::GET, "/v1/conversations/sess-1/workflow", None).await;
    let (_, a_list) = call(&app, Method::GET, "/v1/conversations", None).await;
    assert_eq!(
        (a_conv["title"].clone(), a_conv["user_id"].clone()),
        (Value::Null, json!("alice")),
        "B's patch changed nothing: {a_conv}"
    );
    assert_eq!(seqs(&a_msgs), [1], "B's append was not added: {a_msgs}");
    assert_eq!(a_msgs["data"][0]["rating"], Value::Null);
    assert_eq!(
        (a_state["state"].clone(), a_state["version"].as_i64()),
        (json!({"secret": 1}), Some(1)),
        "{a_state}"
    );
    assert_eq!(
        (a_wf["current_step"].as_str(), a_wf["version"].as_i64()),
        (Some("one"), Some(1)),
        "{a_wf}"
    );
    assert_eq!(ids(&a_list), ["sess-1"], "A does not see B's sess-1: {a_list}");
    let (_, b_own) = call_as(&app, &b_key, Method::GET, "/v1/conversations/sess-1", None).await;
    assert_eq!(b_own["user_id"], "bob", "B reads its own sess-1: {b_own}");
}
