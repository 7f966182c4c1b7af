//! A conversation from creation to deletion, and the list of a user's conversations.

use super::*;
use crate::api::helpers::{append, call, conversation, q, rows_of, time};

#[tokio::test]
async fn a_conversation_with_a_session_id_is_created_read_patched_and_deleted() {
    let app = spawn_app().await;
    let created = conversation(&app, json!({"id": "sess-42", "user_id": "user-7", "title": "Refund for order 1182",
        "channel": "web", "assistant": "support-bot", "metadata": {"channel_kind": "web", "locale": "en"}, "embed_messages": false})).await;
    let generated = conversation(&app, json!({"user_id": "user:7@example.com"})).await;
    let (dup_status, dup) = call(
        &app,
        Method::POST,
        "/v1/conversations",
        Some(json!({"id": "sess-42", "user_id": "someone-else", "title": "hijack"})),
    )
    .await;
    let mut refused = vec![];
    for body in [
        json!({"id": "has space", "user_id": "u"}),
        json!({"id": "a/b", "user_id": "u"}),
        json!({"id": "", "user_id": "u"}),
        json!({"id": "x".repeat(129), "user_id": "u"}),
        json!({"user_id": ""}),
        json!({"user_id": "u#1"}),
        json!({"user_id": "u".repeat(257)}),
        json!({"user_id": "u", "title": "t".repeat(1001)}),
        json!({"user_id": "u", "metadata": [1, 2]}),
    ] {
        let res = app
            .with(Method::POST, "/v1/conversations", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        refused.push((body, status, err));
    }
    let longest = conversation(
        &app,
        json!({"id": format!("{}_.:@=+~-", "a".repeat(120)), "user_id": "u"}),
    )
    .await;

    let (get_status, got) = call(&app, Method::GET, "/v1/conversations/sess-42", None).await;
    let (patch_status, patched) = call(
        &app,
        Method::PATCH,
        "/v1/conversations/sess-42",
        Some(
            json!({"title": "Refund for order 1182 (resolved)", "metadata": {"channel_kind": "web", "resolved": true}}),
        ),
    )
    .await;
    let (_, reread) = call(&app, Method::GET, "/v1/conversations/sess-42", None).await;
    let bad_patch = app
        .with(Method::PATCH, "/v1/conversations/sess-42", &app.owner_key)
        .json(&json!({"user_id": "other"}))
        .send()
        .await
        .unwrap();

    assert_eq!(created["id"], "sess-42", "the caller's id is kept: {created}");
    assert_eq!(created["user_id"], "user-7");
    assert_eq!(created["title"], "Refund for order 1182");
    assert_eq!(created["channel"], "web");
    assert_eq!(created["assistant"], "support-bot");
    assert_eq!(created["metadata"], json!({"channel_kind": "web", "locale": "en"}));
    assert_eq!(created["embed_messages"], false);
    assert_eq!(
        (created["message_count"].as_i64(), created["last_seq"].as_i64()),
        (Some(0), Some(0)),
        "{created}"
    );
    time(&created["created_at"]);
    time(&created["updated_at"]);
    let gen_id: uuid::Uuid = generated["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("a UUID by default ({e}): {generated}"));
    assert_eq!(gen_id.get_version_num(), 7, "a UUIDv7: {generated}");
    assert_eq!(generated["user_id"], "user:7@example.com");
    assert_eq!(
        generated["embed_messages"],
        Value::Null,
        "absent: the tenant decides: {generated}"
    );
    assert_eq!(generated["metadata"], json!({}));
    assert_eq!(generated["title"], Value::Null);
    assert_eq!((dup_status, dup["code"].as_str()), (409, Some("conflict")), "{dup}");
    for (body, status, err) in &refused {
        assert_eq!(
            (*status, err["code"].as_str()),
            (400, Some("validation_failed")),
            "{body}: {err}"
        );
    }
    assert_eq!(longest["id"].as_str().unwrap().len(), 128);

    assert_eq!(get_status, 200, "{got}");
    for field in [
        "id",
        "user_id",
        "title",
        "channel",
        "assistant",
        "metadata",
        "embed_messages",
        "message_count",
        "last_seq",
        "created_at",
    ] {
        assert_eq!(got[field], created[field], "{field}");
    }
    assert_eq!(got["title"], "Refund for order 1182", "the duplicate changed nothing");
    assert_eq!(patch_status, 200, "{patched}");
    assert_eq!(patched["title"], "Refund for order 1182 (resolved)");
    assert_eq!(
        patched["metadata"],
        json!({"channel_kind": "web", "resolved": true}),
        "metadata is replaced"
    );
    assert_eq!(patched["channel"], "web", "untouched fields stay");
    assert_eq!(patched["user_id"], "user-7");
    assert!(time(&patched["updated_at"]) >= time(&created["updated_at"]));
    assert_eq!(reread["title"], patched["title"], "the patch is stored");
    let (bad_code, bad_body) = json(bad_patch).await;
    bad_request(bad_code, &bad_body);

    // Delete: the conversation and everything under it.
    append(
        &app,
        "sess-42",
        json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    )
    .await;
    let (state_status, _) = call(
        &app,
        Method::PUT,
        "/v1/conversations/sess-42/agents/planner/state",
        Some(json!({"state": {"k": 1}})),
    )
    .await;
    let (wf_status, _) = call(
        &app,
        Method::PUT,
        "/v1/conversations/sess-42/workflow",
        Some(json!({"workflow_type": "refund", "current_step": "start", "state": {}})),
    )
    .await;
    assert_eq!((state_status, wf_status), (201, 201));
    let (del_status, _) = call(&app, Method::DELETE, "/v1/conversations/sess-42", None).await;
    let gone = app
        .with(Method::GET, "/v1/conversations/sess-42", &app.owner_key)
        .send()
        .await
        .unwrap();
    let again = app
        .with(Method::DELETE, "/v1/conversations/sess-42", &app.owner_key)
        .send()
        .await
        .unwrap();
    let patch_gone = app
        .with(Method::PATCH, "/v1/conversations/sess-42", &app.owner_key)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    let unknown = app
        .with(Method::GET, "/v1/conversations/never-was", &app.owner_key)
        .send()
        .await
        .unwrap();

    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    assert_error(again, 404, "not_found").await;
    assert_error(patch_gone, 404, "not_found").await;
    assert_error(unknown, 404, "not_found").await;
    for table in ["messages", "agent_states", "workflows", "workflow_history"] {
        assert_eq!(
            rows_of(&app, table, "sess-42").await,
            0,
            "{table} rows went with the conversation"
        );
    }
    let again = conversation(&app, json!({"id": "sess-42", "user_id": "user-8"})).await;
    assert_eq!(
        (again["user_id"].as_str(), again["last_seq"].as_i64()),
        (Some("user-8"), Some(0)),
        "a deleted id may be used again: {again}"
    );
}

#[tokio::test]
async fn conversations_list_by_user_newest_first_with_a_metadata_filter_and_paging() {
    let app = spawn_app().await;
    let kinds = ["web", "sms", "web", "sms", "web"];
    for (i, kind) in kinds.iter().enumerate() {
        conversation(
            &app,
            json!({"id": format!("c{i}"), "user_id": "user-1", "metadata": {"channel_kind": kind, "n": i}}),
        )
        .await;
    }
    conversation(
        &app,
        json!({"id": "other", "user_id": "user-2", "metadata": {"channel_kind": "web"}}),
    )
    .await;
    let list = |query: String| {
        let app = &app;
        async move {
            let (status, list) = call(app, Method::GET, &format!("/v1/conversations{query}"), None).await;
            assert_eq!(status, 200, "{query}: {list}");
            list
        }
    };
    let web = q(&json!({"channel_kind": "web"}).to_string());

    let user1 = list("?user_id=user-1".into()).await;
    let everyone = list(String::new()).await;
    let user1_web = list(format!("?user_id=user-1&filter={web}")).await;
    let all_web = list(format!("?filter={web}")).await;
    let nested = list(format!(
        "?user_id=user-1&filter={}",
        q(&json!({"$and": [{"channel_kind": "web"}, {"n": {"$gte": 2}}]}).to_string())
    ))
    .await;
    let nobody = list("?user_id=user-3".into()).await;

    let mut paged = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?user_id=user-1&limit=2&cursor={}", q(c)),
            None => "?user_id=user-1&limit=2".into(),
        };
        let page = list(query).await;
        assert!(page["data"].as_array().unwrap().len() <= 2, "{page}");
        paged.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    let web_page1 = list(format!("?user_id=user-1&filter={web}&limit=2")).await;
    let web_cursor = web_page1["next_cursor"]
        .as_str()
        .expect("a second page of web conversations")
        .to_string();
    let web_page2 = list(format!(
        "?user_id=user-1&filter={web}&limit=2&cursor={}",
        q(&web_cursor)
    ))
    .await;
    let bad_filter = app
        .with(
            Method::GET,
            &format!("/v1/conversations?filter={}", q(r#"{"n": {"$bad": 1}}"#)),
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    let not_json = app
        .with(
            Method::GET,
            &format!("/v1/conversations?filter={}", q("{nope")),
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    let bad_limit = app
        .with(Method::GET, "/v1/conversations?limit=0", &app.owner_key)
        .send()
        .await
        .unwrap();

    assert_eq!(ids(&user1), ["c4", "c3", "c2", "c1", "c0"], "newest first: {user1}");
    assert_eq!(user1["next_cursor"], Value::Null);
    assert_eq!(ids(&everyone), ["other", "c4", "c3", "c2", "c1", "c0"]);
    assert_eq!(ids(&user1_web), ["c4", "c2", "c0"]);
    assert_eq!(ids(&all_web), ["other", "c4", "c2", "c0"]);
    assert_eq!(ids(&nested), ["c4", "c2"]);
    assert!(ids(&nobody).is_empty(), "{nobody}");
    assert_eq!(
        paged,
        ids(&user1),
        "the pages together are the whole list, in order, without repeats"
    );
    assert_eq!(pages, 3);
    assert_eq!(ids(&web_page1), ["c4", "c2"]);
    assert_eq!(ids(&web_page2), ["c0"], "the cursor keeps the filter");
    assert_eq!(web_page2["next_cursor"], Value::Null);
    let (code, body) = json(bad_filter).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_filter")), "{body}");
    let (code, body) = json(not_json).await;
    assert_eq!(code, 400, "{body}");
    assert_error(bad_limit, 400, "validation_failed").await;
    let listed = &user1["data"][0];
    assert_eq!(listed["metadata"], json!({"channel_kind": "web", "n": 4}), "{listed}");
    assert_eq!(listed["user_id"], "user-1");
}
