//! Conversations and their messages through the HTTP API: caller-chosen ids, listings by user
//! with a metadata filter and paging, appends numbered 1..n in commit order, the last n and
//! paging either way (every message exactly once while others append), refused input that
//! writes nothing, embedding on the conversation's or the tenant's say and search by meaning,
//! roles, and tenant isolation of every path.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::documents::call;
use crate::api::helpers::{assert_error, json, spawn_app, spawn_app_with, TestApp, ADMIN_KEY};
use crate::api::runs::{call_as, decimal, q, rfc3339, time};

/// Creates a conversation with the owner key; asserts 201.
pub async fn conversation(app: &TestApp, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, "/v1/conversations", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Appends one message or a batch; asserts 201 and returns the messages written.
pub async fn append(app: &TestApp, conversation: &str, body: Value) -> Vec<Value> {
    let (status, written) = call(
        app,
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{written}");
    written["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {written}"))
        .clone()
}

/// A page of messages (`query` starts with `?` or is empty); asserts 200.
async fn page(app: &TestApp, conversation: &str, query: &str) -> Value {
    let (status, page) = call(
        app,
        Method::GET,
        &format!("/v1/conversations/{conversation}/messages{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page
}

fn seqs(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_else(|| panic!("an integer seq: {m}")))
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// The contents of search hits, best first.
fn hit_contents(hits: &Value) -> Vec<String> {
    hits["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {hits}"))
        .iter()
        .map(|h| {
            h["message"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("a hit with its message: {h}"))
                .to_string()
        })
        .collect()
}

async fn search(app: &TestApp, conversation: &str, body: Value) -> Value {
    let (status, hits) = call(
        app,
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages/search"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    hits
}

/// Rows of `table` for one conversation of the default tenant, read as the table owner.
pub async fn rows_of(app: &TestApp, table: &str, conversation: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE conversation_id = $1"),
            &[&conversation],
        )
        .await
        .unwrap()
        .get(0)
}

/// A time strictly between two RFC 3339 times.
fn between(a: &Value, b: &Value) -> String {
    let (a, b) = (time(a), time(b));
    assert!(
        b - a >= chrono::Duration::microseconds(2),
        "{a} and {b} are too close to put a bound between them"
    );
    rfc3339(a + (b - a) / 2)
}

/// The code of a 400 that may be either of the two body-error codes.
fn bad_request(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&body["code"].as_str().unwrap_or("")),
        "{body}"
    );
}

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

#[tokio::test]
async fn messages_are_numbered_in_order_and_page_from_the_end_or_either_way() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "chat", "user_id": "u1", "embed_messages": false})).await;
    let one = append(
        &app,
        "chat",
        json!({"role": "user", "content": "Hello there", "metadata": {"lang": "en"},
        "token_count": 3, "cost_usd": "0.0001", "rating": 5}),
    )
    .await;
    let batch = append(
        &app,
        "chat",
        json!({"messages": [
            {"role": "assistant", "content": "Hi! How can I help?", "agent_name": "greeter"},
            {"role": "system", "content": "Be brief."},
            {"role": "tool", "content": "{\"temp\": 21}", "agent_name": "weather-tool"},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "You're welcome."},
            {"role": "user", "content": "Bye"}
        ]}),
    )
    .await;
    let (_, conv) = call(&app, Method::GET, "/v1/conversations/chat", None).await;

    assert_eq!(one.len(), 1);
    let m = &one[0];
    assert_eq!(m["seq"], 1, "{m}");
    assert_eq!(m["conversation_id"], "chat");
    assert_eq!(m["role"], "user");
    assert_eq!(m["content"], "Hello there");
    assert_eq!(m["metadata"], json!({"lang": "en"}));
    assert_eq!(m["token_count"], 3);
    assert_eq!(decimal(&m["cost_usd"]), "0.0001");
    assert_eq!(m["rating"], 5);
    assert_eq!(m["agent_name"], Value::Null);
    assert_eq!(m["embedded"], false, "embedding is off for this conversation");
    m["id"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .unwrap_or_else(|e| panic!("a uuid id ({e}): {m}"));
    time(&m["created_at"]);
    let batch_seqs: Vec<_> = batch.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        batch_seqs,
        [2, 3, 4, 5, 6, 7],
        "a batch continues the numbering, in order"
    );
    assert_eq!(batch[0]["agent_name"], "greeter");
    assert_eq!(batch[2]["role"], "tool");
    assert_eq!(batch[1]["metadata"], json!({}));
    assert_eq!(
        (
            batch[1]["token_count"].clone(),
            batch[1]["cost_usd"].clone(),
            batch[1]["rating"].clone()
        ),
        (Value::Null, Value::Null, Value::Null)
    );
    assert_eq!(
        (conv["message_count"].as_i64(), conv["last_seq"].as_i64()),
        (Some(7), Some(7)),
        "{conv}"
    );

    let all = page(&app, "chat", "").await;
    let last3 = page(&app, "chat", "?limit=3").await;
    let before5 = page(&app, "chat", "?before=5&limit=2").await;
    let before3 = page(&app, "chat", "?before=3&limit=5").await;
    let after2 = page(&app, "chat", "?after=2&limit=3").await;
    let after5 = page(&app, "chat", "?after=5&limit=3").await;
    let after7 = page(&app, "chat", "?after=7").await;
    let after0 = page(&app, "chat", "?after=0&limit=2").await;
    let before1 = page(&app, "chat", "?before=1").await;

    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6, 7], "{all}");
    assert_eq!(all["has_more"], false);
    assert_eq!(all["data"][0], one[0], "listed as written");
    assert_eq!(all["data"][6]["content"], "Bye");
    assert_eq!(seqs(&last3), [5, 6, 7], "the last n, ascending");
    assert_eq!(last3["has_more"], true, "more before");
    assert_eq!(seqs(&before5), [3, 4]);
    assert_eq!(before5["has_more"], true);
    assert_eq!(seqs(&before3), [1, 2]);
    assert_eq!(before3["has_more"], false);
    assert_eq!(seqs(&after2), [3, 4, 5]);
    assert_eq!(after2["has_more"], true, "more after");
    assert_eq!(seqs(&after5), [6, 7]);
    assert_eq!(after5["has_more"], false);
    assert!(seqs(&after7).is_empty());
    assert_eq!(after7["has_more"], false);
    assert_eq!(seqs(&after0), [1, 2]);
    assert_eq!(after0["has_more"], true);
    assert!(seqs(&before1).is_empty());
    assert_eq!(before1["has_more"], false);
    for query in ["?limit=0", "?limit=501", "?after=-1", "?after=abc"] {
        let res = app
            .with(
                Method::GET,
                &format!("/v1/conversations/chat/messages{query}"),
                &app.owner_key,
            )
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err);
    }
    let (max_status, _) = call(&app, Method::GET, "/v1/conversations/chat/messages?limit=500", None).await;
    assert_eq!(max_status, 200);

    // A batch of 100 is the most.
    let hundred: Vec<_> = (0..100)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let written = append(&app, "chat", json!({"messages": hundred})).await;
    assert_eq!(
        (written[0]["seq"].as_i64(), written[99]["seq"].as_i64()),
        (Some(8), Some(107))
    );
    let too_many: Vec<_> = (0..101)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let res = app
        .with(Method::POST, "/v1/conversations/chat/messages", &app.owner_key)
        .json(&json!({"messages": too_many}))
        .send()
        .await
        .unwrap();
    let (status, err) = json(res).await;
    bad_request(status, &err);
    let res = app
        .with(Method::POST, "/v1/conversations/chat/messages", &app.owner_key)
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    let (status, err) = json(res).await;
    bad_request(status, &err);
    assert_eq!(
        rows_of(&app, "messages", "chat").await,
        107,
        "the refused batches wrote nothing"
    );
}

#[tokio::test]
async fn paging_with_after_sees_every_message_once_in_order_while_others_append() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "busy", "user_id": "u1", "embed_messages": false})).await;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 50;
    let done = AtomicBool::new(false);

    let writers = async {
        let tasks = (0..WRITERS).map(|w| {
            let app = &app;
            async move {
                let mut i = 0;
                let mut size = 1;
                while i < PER_WRITER {
                    let n = size.min(PER_WRITER - i);
                    let batch: Vec<_> = (i..i + n)
                        .map(|j| json!({"role": "user", "content": format!("writer {w} message {j}"), "metadata": {"w": w, "i": j}}))
                        .collect();
                    let res = app.with(Method::POST, "/v1/conversations/busy/messages", &app.owner_key)
                        .json(&json!({"messages": batch})).send().await.unwrap();
                    let (status, body) = json(res).await;
                    assert_eq!(status, 201, "{body}");
                    i += n;
                    size = size % 4 + 1;
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        done.store(true, Ordering::SeqCst);
    };
    let reader = async {
        let mut seen: Vec<Value> = vec![];
        let mut last = 0;
        let mut reads_while_writing = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let writers_done = done.load(Ordering::SeqCst);
            let page = page(&app, "busy", &format!("?after={last}&limit=7")).await;
            let data = page["data"].as_array().unwrap().clone();
            if !writers_done && !data.is_empty() {
                reads_while_writing += 1;
            }
            for m in &data {
                last = m["seq"].as_i64().unwrap();
                seen.push(m.clone());
            }
            if writers_done && data.is_empty() {
                assert_eq!(page["has_more"], false, "{page}");
                break;
            }
            if data.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert!(Instant::now() < deadline, "the reader did not catch up");
        }
        (seen, reads_while_writing)
    };
    let ((), (seen, reads_while_writing)) = tokio::join!(writers, reader);

    let total = (WRITERS * PER_WRITER) as i64;
    let seen_seqs: Vec<i64> = seen.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seen_seqs,
        (1..=total).collect::<Vec<_>>(),
        "every seq exactly once, in order, no gaps"
    );
    let unique_ids: HashSet<_> = seen.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(unique_ids.len(), seen.len(), "no message twice");
    let contents: HashSet<_> = seen
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    let expected: HashSet<_> = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |j| format!("writer {w} message {j}")))
        .collect();
    assert_eq!(contents, expected, "every message written was seen");
    for m in &seen {
        let (w, i) = (
            m["metadata"]["w"].as_u64().unwrap(),
            m["metadata"]["i"].as_u64().unwrap(),
        );
        assert_eq!(
            m["content"],
            format!("writer {w} message {i}"),
            "content and metadata belong together: {m}"
        );
    }
    for w in 0..WRITERS as u64 {
        let order: Vec<u64> = seen
            .iter()
            .filter(|m| m["metadata"]["w"] == w)
            .map(|m| m["metadata"]["i"].as_u64().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..PER_WRITER as u64).collect::<Vec<_>>(),
            "writer {w}'s messages in the order it wrote them"
        );
    }
    let switches = seen
        .windows(2)
        .filter(|p| p[0]["metadata"]["w"] != p[1]["metadata"]["w"])
        .count();
    assert!(
        switches > WRITERS,
        "the writers' appends interleaved ({switches} switches)"
    );
    assert!(
        reads_while_writing >= 2,
        "the reader read while the writers wrote ({reads_while_writing} pages)"
    );
    let everything = page(&app, "busy", "?limit=500").await;
    assert_eq!(
        everything["data"].as_array().unwrap(),
        &seen,
        "the reader saw exactly what is stored"
    );
    let (_, conv) = call(&app, Method::GET, "/v1/conversations/busy", None).await;
    assert_eq!(
        (conv["message_count"].as_i64(), conv["last_seq"].as_i64()),
        (Some(total), Some(total)),
        "{conv}"
    );
}

#[tokio::test]
async fn refused_messages_write_nothing_and_patch_changes_only_metadata_and_rating() {
    // Room for a 100000-character message of two-byte characters.
    let app = spawn_app_with(|c| c.body_limit = 1024 * 1024).await;
    conversation(&app, json!({"id": "c", "user_id": "u", "embed_messages": false})).await;
    let first = append(
        &app,
        "c",
        json!({"role": "user", "content": "first", "metadata": {"keep": 1}, "rating": 1}),
    )
    .await
    .remove(0);
    let mid = first["id"].as_str().unwrap().to_string();
    let post = |body: Value| {
        app.with(Method::POST, "/v1/conversations/c/messages", &app.owner_key)
            .json(&body)
            .send()
    };

    let bad_role = post(json!({"messages": [{"role": "user", "content": "ok"}, {"role": "robot", "content": "beep"}]}))
        .await
        .unwrap();
    let bad_role_one = post(json!({"role": "Admin", "content": "beep"})).await.unwrap();
    let too_long = post(
        json!({"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "x".repeat(100_001)}]}),
    )
    .await
    .unwrap();
    let empty = post(json!({"role": "user", "content": ""})).await.unwrap();
    let bad_rating = post(json!({"role": "user", "content": "ok", "rating": 101}))
        .await
        .unwrap();
    let bad_tokens = post(json!({"role": "user", "content": "ok", "token_count": -1}))
        .await
        .unwrap();
    let bad_cost = post(json!({"role": "user", "content": "ok", "cost_usd": "-1"}))
        .await
        .unwrap();
    let unknown_field = post(json!({"role": "user", "content": "ok", "seq": 9})).await.unwrap();
    let (role_status, role_err) = json(bad_role).await;
    let (role1_status, role1_err) = json(bad_role_one).await;
    bad_request(role_status, &role_err);
    bad_request(role1_status, &role1_err);
    assert_error(too_long, 400, "validation_failed").await;
    for res in [empty, bad_rating, bad_tokens, bad_cost, unknown_field] {
        let (status, err) = json(res).await;
        bad_request(status, &err);
    }
    assert_eq!(
        rows_of(&app, "messages", "c").await,
        1,
        "the refused appends wrote nothing"
    );
    let (_, conv) = call(&app, Method::GET, "/v1/conversations/c", None).await;
    assert_eq!(
        (conv["message_count"].as_i64(), conv["last_seq"].as_i64()),
        (Some(1), Some(1)),
        "{conv}"
    );

    // The longest content, in characters (200000 bytes), is taken; the numbering has no gap.
    let longest = append(&app, "c", json!({"role": "assistant", "content": "é".repeat(100_000)}))
        .await
        .remove(0);
    assert_eq!(longest["seq"], 2, "refused appends used no numbers: {}", longest["seq"]);
    assert_eq!(longest["content"].as_str().unwrap().chars().count(), 100_000);

    // PATCH: metadata and rating only.
    let path = format!("/v1/conversations/c/messages/{mid}");
    let (patch_status, patched) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"metadata": {"helpful": true}, "rating": -3})),
    )
    .await;
    let (rating_only_status, rating_only) = call(&app, Method::PATCH, &path, Some(json!({"rating": 100}))).await;
    let with_content = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&json!({"content": "rewritten", "rating": 2}))
        .send()
        .await
        .unwrap();
    let with_role = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&json!({"role": "assistant"}))
        .send()
        .await
        .unwrap();
    let rating_out = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&json!({"rating": -101}))
        .send()
        .await
        .unwrap();
    let unknown_mid = app
        .with(
            Method::PATCH,
            &format!("/v1/conversations/c/messages/{}", uuid::Uuid::now_v7()),
            &app.owner_key,
        )
        .json(&json!({"rating": 1}))
        .send()
        .await
        .unwrap();
    conversation(&app, json!({"id": "other", "user_id": "u"})).await;
    let wrong_conversation = app
        .with(
            Method::PATCH,
            &format!("/v1/conversations/other/messages/{mid}"),
            &app.owner_key,
        )
        .json(&json!({"rating": 1}))
        .send()
        .await
        .unwrap();
    let stored = page(&app, "c", "?limit=1&before=2").await;

    assert_eq!(patch_status, 200, "{patched}");
    assert_eq!(patched["metadata"], json!({"helpful": true}), "metadata is replaced");
    assert_eq!(patched["rating"], -3);
    assert_eq!(patched["content"], "first");
    assert_eq!(patched["seq"], 1);
    assert_eq!(patched["id"], first["id"]);
    assert_eq!(rating_only_status, 200, "{rating_only}");
    assert_eq!(rating_only["rating"], 100);
    assert_eq!(
        rating_only["metadata"],
        json!({"helpful": true}),
        "an absent field is kept"
    );
    assert_error(with_content, 400, "invalid_request").await;
    assert_error(with_role, 400, "invalid_request").await;
    assert_error(rating_out, 400, "validation_failed").await;
    assert_error(unknown_mid, 404, "not_found").await;
    let (code, err) = json(wrong_conversation).await;
    assert_eq!(
        (code, err["code"].as_str()),
        (404, Some("not_found")),
        "a message is addressed through its own conversation: {err}"
    );
    let stored = &stored["data"][0];
    assert_eq!(
        stored["content"], "first",
        "the refused patches changed nothing: {stored}"
    );
    assert_eq!(
        (stored["rating"].as_i64(), &stored["metadata"]),
        (Some(100), &json!({"helpful": true}))
    );

    // Unknown conversation.
    let unknown = [
        app.with(Method::POST, "/v1/conversations/nope/messages", &app.owner_key)
            .json(&json!({"role": "user", "content": "hi"})),
        app.with(Method::GET, "/v1/conversations/nope/messages", &app.owner_key),
        app.with(
            Method::PATCH,
            &format!("/v1/conversations/nope/messages/{mid}"),
            &app.owner_key,
        )
        .json(&json!({"rating": 1})),
        app.with(Method::POST, "/v1/conversations/nope/messages/search", &app.owner_key)
            .json(&json!({"query": "hi"})),
    ];
    for req in unknown {
        assert_error(req.send().await.unwrap(), 404, "not_found").await;
    }
    let nope: i64 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM conversations WHERE id = 'nope'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nope, 0, "appending to an unknown conversation does not create it");
}

const TOPICS: [(&str, &str, Option<&str>, &str); 5] = [
    (
        "user",
        "The weather in Lisbon is sunny and warm today, around 25 degrees.",
        None,
        "weather",
    ),
    (
        "user",
        "I want a refund for the broken headphones I ordered; please send my money back.",
        None,
        "shop",
    ),
    (
        "assistant",
        "Your flight to Berlin has been delayed by three hours at the airport.",
        Some("travel-bot"),
        "travel",
    ),
    (
        "assistant",
        "Here is a recipe for chocolate cake: flour, sugar, cocoa and eggs.",
        Some("chef-bot"),
        "food",
    ),
    (
        "user",
        "My laptop will not turn on since the latest software update.",
        None,
        "tech",
    ),
];

#[tokio::test]
async fn embedded_messages_are_found_by_meaning_and_filtered() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "emb", "user_id": "u1", "embed_messages": true})).await;
    conversation(&app, json!({"id": "plain", "user_id": "u1", "embed_messages": false})).await;
    let mut written = vec![];
    for (role, content, agent, topic) in TOPICS {
        // One append each: distinct creation times for since/until.
        let m = append(
            &app,
            "emb",
            json!({"role": role, "content": content, "agent_name": agent, "metadata": {"topic": topic}}),
        )
        .await;
        written.push(m[0].clone());
    }
    let plain = append(
        &app,
        "plain",
        json!({"messages": TOPICS.iter().map(|(r, c, _, _)| json!({"role": r, "content": c})).collect::<Vec<_>>()}),
    )
    .await;

    assert!(
        written.iter().all(|m| m["embedded"] == true),
        "embed_messages true: {written:?}"
    );
    assert!(
        plain.iter().all(|m| m["embedded"] == false),
        "embed_messages false: {plain:?}"
    );
    let listed = page(&app, "emb", "").await;
    assert!(
        listed["data"].as_array().unwrap().iter().all(|m| m["embedded"] == true),
        "{listed}"
    );

    let paraphrases = [
        ("is it hot and bright outside right now", 0),
        ("I would like my payment returned for a damaged product", 1),
        ("the plane is going to leave late", 2),
        ("how do I bake a dessert", 3),
        ("my computer doesn't boot anymore", 4),
    ];
    for (query, want) in paraphrases {
        let hits = search(&app, "emb", json!({"query": query})).await;
        let contents = hit_contents(&hits);
        assert_eq!(
            contents.first().map(String::as_str),
            Some(TOPICS[want].1),
            "{query:?} ranks its message first: {hits}"
        );
        assert_eq!(contents.len(), 5, "k defaults to 10; all five are embedded: {hits}");
        let scores: Vec<f64> = hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
        assert!(
            scores.iter().all(|s| (-1.0..=1.0001).contains(s)),
            "cosine similarities: {scores:?}"
        );
        assert_eq!(hits["data"][0]["message"]["id"], written[want]["id"]);
        assert_eq!(hits["data"][0]["message"]["conversation_id"], "emb");
    }
    let plain_hits = search(&app, "plain", json!({"query": "how do I bake a dessert"})).await;
    assert_eq!(
        plain_hits["data"],
        json!([]),
        "messages without vectors are not found: {plain_hits}"
    );

    // Filters.
    let k2 = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "k": 2}),
    )
    .await;
    let users = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "role": "user"}),
    )
    .await;
    let chef = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "agent_name": "chef-bot"}),
    )
    .await;
    let since = between(&written[2]["created_at"], &written[3]["created_at"]);
    let recent = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "since": since}),
    )
    .await;
    let older = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "until": since}),
    )
    .await;
    let topic = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "filter": {"topic": {"$in": ["food", "tech"]}}}),
    )
    .await;
    let strict = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "min_score": 0.99}),
    )
    .await;
    let loose = search(
        &app,
        "emb",
        json!({"query": "the plane is going to leave late", "min_score": -1}),
    )
    .await;

    let set = |hits: &Value| hit_contents(hits).into_iter().collect::<HashSet<_>>();
    let of = |idx: &[usize]| idx.iter().map(|i| TOPICS[*i].1.to_string()).collect::<HashSet<_>>();
    assert_eq!(hit_contents(&k2).len(), 2, "{k2}");
    assert_eq!(hit_contents(&k2)[0], TOPICS[2].1);
    assert_eq!(set(&users), of(&[0, 1, 4]), "role=user: {users}");
    assert_eq!(set(&chef), of(&[3]), "agent_name: {chef}");
    assert_eq!(set(&recent), of(&[3, 4]), "since: {recent}");
    assert_eq!(set(&older), of(&[0, 1, 2]), "until: {older}");
    assert_eq!(hit_contents(&older)[0], TOPICS[2].1);
    assert_eq!(set(&topic), of(&[3, 4]), "metadata filter: {topic}");
    assert!(hit_contents(&strict).is_empty(), "no paraphrase scores 0.99: {strict}");
    assert_eq!(hit_contents(&loose).len(), 5);
    for body in [
        json!({"query": ""}),
        json!({"query": "x", "k": 0}),
        json!({"query": "x", "k": 101}),
        json!({"query": "x", "role": "robot"}),
        json!({"query": "x", "since": "yesterday"}),
        json!({"query": "x", "user_id": "u1", "unknown": 1, "bogus": true}),
    ] {
        let res = app
            .with(Method::POST, "/v1/conversations/emb/messages/search", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err);
    }
    let bad_filter = app
        .with(Method::POST, "/v1/conversations/emb/messages/search", &app.owner_key)
        .json(&json!({"query": "x", "filter": {"topic": {"$bad": 1}}}))
        .send()
        .await
        .unwrap();
    assert_error(bad_filter, 400, "invalid_filter").await;
}

#[tokio::test]
async fn the_tenant_setting_turns_embedding_on_when_the_conversation_leaves_it_open() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "inherit", "user_id": "u1"})).await;
    conversation(&app, json!({"id": "off", "user_id": "u1", "embed_messages": false})).await;
    let before = append(
        &app,
        "inherit",
        json!({"role": "user", "content": "The weather in Lisbon is sunny and warm today."}),
    )
    .await;
    let settings = app
        .with(
            Method::PATCH,
            &format!("/v1/tenants/{}", app.default_tenant),
            &app.owner_key,
        )
        .json(&json!({"settings": {"embed_messages": true}}))
        .send()
        .await
        .unwrap();
    let (settings_status, tenant) = json(settings).await;
    assert_eq!(settings_status, 200, "{tenant}");
    let after = append(
        &app,
        "inherit",
        json!({"role": "user", "content": "My flight to Berlin was delayed by three hours."}),
    )
    .await;
    let off = append(
        &app,
        "off",
        json!({"role": "user", "content": "My flight to Berlin was delayed by three hours."}),
    )
    .await;
    let created_after = conversation(&app, json!({"id": "later", "user_id": "u1"})).await;
    let later = append(
        &app,
        "later",
        json!({"role": "user", "content": "Chocolate cake needs cocoa."}),
    )
    .await;
    let hits = search(&app, "inherit", json!({"query": "is the plane late"})).await;
    let weather = search(&app, "inherit", json!({"query": "sunny weather"})).await;

    assert_eq!(before[0]["embedded"], false, "no tenant setting yet: {}", before[0]);
    assert_eq!(
        after[0]["embedded"], true,
        "the tenant's setting applies to a conversation with null: {}",
        after[0]
    );
    assert_eq!(
        off[0]["embedded"], false,
        "the conversation's own false wins over the tenant: {}",
        off[0]
    );
    assert_eq!(created_after["embed_messages"], Value::Null);
    assert_eq!(later[0]["embedded"], true);
    assert_eq!(
        hit_contents(&hits),
        ["My flight to Berlin was delayed by three hours."],
        "{hits}"
    );
    assert_eq!(
        hit_contents(&weather),
        ["My flight to Berlin was delayed by three hours."],
        "the message written before has no vector: {weather}"
    );

    // The conversation's own switch, set by PATCH, overrides the tenant.
    let (patch_status, patched) = call(
        &app,
        Method::PATCH,
        "/v1/conversations/inherit",
        Some(json!({"embed_messages": false})),
    )
    .await;
    assert_eq!(patch_status, 200, "{patched}");
    assert_eq!(patched["embed_messages"], false);
    let switched = append(&app, "inherit", json!({"role": "user", "content": "another"})).await;
    assert_eq!(switched[0]["embedded"], false, "{}", switched[0]);
}

#[tokio::test]
async fn the_tenant_wide_search_finds_only_that_users_messages() {
    let app = spawn_app().await;
    for (id, user) in [("u1-a", "u1"), ("u1-b", "u1"), ("u2-a", "u2")] {
        conversation(&app, json!({"id": id, "user_id": user, "embed_messages": true})).await;
    }
    append(&app, "u1-a", json!({"messages": [
        {"role": "user", "content": "My package never arrived, where is my order?"},
        {"role": "assistant", "content": "I have reshipped your order; it arrives Monday.", "agent_name": "support-bot"}]})).await;
    append(
        &app,
        "u1-b",
        json!({"role": "user", "content": "The hotel room was too noisy to sleep."}),
    )
    .await;
    append(
        &app,
        "u2-a",
        json!({"role": "user", "content": "My package never arrived, where is my order?"}),
    )
    .await;

    let tenant_search = |body: Value| {
        let app = &app;
        async move {
            let (status, hits) = call(app, Method::POST, "/v1/messages/search", Some(body)).await;
            assert_eq!(status, 200, "{hits}");
            hits
        }
    };
    let u1 = tenant_search(json!({"query": "the parcel was not delivered", "user_id": "u1"})).await;
    let u2 = tenant_search(json!({"query": "the parcel was not delivered", "user_id": "u2"})).await;
    let u1_users =
        tenant_search(json!({"query": "the parcel was not delivered", "user_id": "u1", "role": "user"})).await;
    let u1_bot =
        tenant_search(json!({"query": "the parcel was not delivered", "user_id": "u1", "agent_name": "support-bot"}))
            .await;
    let nobody = tenant_search(json!({"query": "the parcel was not delivered", "user_id": "nobody"})).await;
    let missing_user = app
        .with(Method::POST, "/v1/messages/search", &app.owner_key)
        .json(&json!({"query": "parcel"}))
        .send()
        .await
        .unwrap();

    let convs = |hits: &Value| {
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["message"]["conversation_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(hit_contents(&u1).len(), 3, "all three of u1's messages: {u1}");
    assert_eq!(hit_contents(&u1)[0], "My package never arrived, where is my order?");
    assert_eq!(convs(&u1)[0], "u1-a");
    assert_eq!(
        convs(&u1).into_iter().collect::<HashSet<_>>(),
        HashSet::from(["u1-a".to_string(), "u1-b".to_string()]),
        "across u1's conversations, none of u2's: {u1}"
    );
    assert_eq!(convs(&u2), ["u2-a"], "{u2}");
    assert_eq!(convs(&u1_users).len(), 2, "{u1_users}");
    assert!(
        u1_users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["message"]["role"] == "user"),
        "{u1_users}"
    );
    assert_eq!(
        hit_contents(&u1_bot),
        ["I have reshipped your order; it arrives Monday."],
        "{u1_bot}"
    );
    assert_eq!(nobody["data"], json!([]));
    let (code, err) = json(missing_user).await;
    bad_request(code, &err);
}

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
