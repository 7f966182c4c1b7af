//! Messages: numbered in commit order, paged either way while others append, refused input, metadata and rating.

use super::*;
use crate::api::helpers::{append, call, conversation, decimal, rows_of, time};

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
