//! Embedded messages found by meaning: in a conversation, across a user's conversations, with the tenant setting.

use super::*;
use crate::api::helpers::{append, call, conversation};

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
        let scores = hit_scores(&hits);
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

/// The messages of a support chat: one names the order number, several say "order", all say
/// "the"; none is embedded.
const CHAT: [&str; 5] = [
    "Hello, I have a question about the order I placed last week.",
    "The order was placed on Monday and the order number is A7731.",
    "The parcel arrived but the box was crushed and the lamp inside is broken.",
    "Can you send a replacement lamp or give me a refund?",
    "Thanks, the replacement is on its way.",
];

#[tokio::test]
async fn text_search_ranks_a_conversations_messages_by_bm25_without_vectors() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "chat", "user_id": "u1", "embed_messages": false})).await;
    conversation(&app, json!({"id": "other", "user_id": "u1", "embed_messages": false})).await;
    let written = append(
        &app,
        "chat",
        json!({"messages": CHAT.iter().map(|c| json!({"role": "user", "content": c})).collect::<Vec<_>>()}),
    )
    .await;
    append(
        &app,
        "other",
        json!({"role": "user", "content": "A broken lamp, a broken lamp, a broken lamp."}),
    )
    .await;
    let text = |query: &str| json!({"query": query, "mode": "text"});

    // OR semantics: a message needs one of the words, not all; the rarer word decides.
    let hits = search(&app, "chat", text("broken A7731 umbrella")).await;
    let found = hit_contents(&hits);
    assert_eq!(found.len(), 2, "the two messages holding one word each: {hits}");
    let scores = hit_scores(&hits);
    assert!(scores.iter().all(|s| *s > 0.0), "BM25 scores: {scores:?}");
    assert_eq!(hits["data"][0]["scores"]["text"], hits["data"][0]["score"], "{hits}");
    assert_eq!(hits["data"][0]["scores"]["vector"], Value::Null, "{hits}");
    assert_eq!(hits["text_reason"], Value::Null, "{hits}");

    // IDF: "order" is in two messages (one says it twice), "refund" in one: the message with
    // the rarer word ranks first.
    let refund = search(&app, "chat", text("order refund")).await;
    assert_eq!(hit_contents(&refund)[0], CHAT[3], "{refund}");
    assert_eq!(hit_contents(&refund).len(), 3, "{refund}");
    // The search reads its own conversation only, and weighs words by it: the other
    // conversation's lamps are not found.
    let lamp = search(&app, "chat", text("lamp")).await;
    assert_eq!(
        hit_contents(&lamp).into_iter().collect::<HashSet<_>>(),
        [CHAT[2], CHAT[3]].iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        "{lamp}"
    );
    // Phrases are required, exclusions left out.
    let phrase = search(&app, "chat", text("\"order number\" lamp")).await;
    assert_eq!(hit_contents(&phrase), [CHAT[1]], "{phrase}");
    let excluded = search(&app, "chat", text("lamp -refund")).await;
    assert_eq!(hit_contents(&excluded), [CHAT[2]], "{excluded}");
    // Nothing to find, and why.
    let none = search(&app, "chat", text("umbrella")).await;
    assert_eq!(
        (none["data"].clone(), none["text_reason"].clone()),
        (json!([]), json!("no_match"))
    );
    let no_words = search(&app, "chat", text("?!")).await;
    assert_eq!(no_words["text_reason"], "no_words", "{no_words}");
    // Tenant-wide, one user's messages in every conversation.
    let (status, all) = call(
        &app,
        Method::POST,
        "/v1/messages/search",
        Some(json!({"query": "broken lamp", "mode": "text", "user_id": "u1"})),
    )
    .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["data"][0]["message"]["conversation_id"], "other",
        "the message that says it three times: {all}"
    );
    assert_eq!(hit_contents(&all).len(), 3, "{all}");
    // `min_score` bounds the BM25 score in text mode.
    let top = scores[0];
    let strict = search(
        &app,
        "chat",
        json!({"query": "broken A7731 umbrella", "mode": "text", "min_score": top}),
    )
    .await;
    assert_eq!(hit_contents(&strict).len(), 1, "{strict}");
    // Hybrid without vectors is the text side alone.
    let hybrid = search(&app, "chat", json!({"query": "refund", "mode": "hybrid"})).await;
    assert_eq!(hit_contents(&hybrid), [CHAT[3]], "{hybrid}");
    assert!(written.iter().all(|m| m["embedded"] == false));
}

#[tokio::test]
async fn hybrid_message_search_fuses_meaning_and_words() {
    let app = spawn_app().await;
    conversation(&app, json!({"id": "emb", "user_id": "u1", "embed_messages": true})).await;
    append(
        &app,
        "emb",
        json!({"messages": TOPICS.iter().map(|(r, c, _, _)| json!({"role": r, "content": c})).collect::<Vec<_>>()}),
    )
    .await;
    // "Berlin" is a word of the flight message only; the meaning points at the weather one.
    let query = "is it warm and sunny in Berlin";
    let vector = search(&app, "emb", json!({"query": query})).await;
    let text = search(&app, "emb", json!({"query": query, "mode": "text"})).await;
    let hybrid = search(&app, "emb", json!({"query": query, "mode": "hybrid"})).await;
    assert_eq!(hit_contents(&vector)[0], TOPICS[0].1, "{vector}");
    assert!(hit_contents(&text).contains(&TOPICS[2].1.to_string()), "{text}");
    let fused = hybrid["data"].as_array().unwrap();
    assert_eq!(fused.len(), 5, "every message, from one side or both: {hybrid}");
    let both = fused
        .iter()
        .find(|h| h["message"]["content"] == TOPICS[2].1)
        .unwrap_or_else(|| panic!("{hybrid}"));
    assert!(
        both["scores"]["vector"].is_f64() && both["scores"]["text"].is_f64(),
        "the flight message is on both sides: {both}"
    );
    let s = hit_scores(&hybrid);
    assert!(s.windows(2).all(|w| w[0] >= w[1]), "best first: {s:?}");
    assert!(s.iter().all(|x| (0.0..=1.0).contains(x)), "weighted, normalized: {s:?}");
    let rrf = search(
        &app,
        "emb",
        json!({"query": query, "mode": "hybrid", "fusion": {"type": "rrf", "k": 60}}),
    )
    .await;
    let top = rrf["data"][0]["score"].as_f64().unwrap();
    assert!(top > 0.0 && top <= 2.0 / 61.0 + 1e-9, "reciprocal ranks: {rrf}");
    let (status, err) = call(
        &app,
        Method::POST,
        "/v1/conversations/emb/messages/search",
        Some(json!({"query": query, "mode": "hybrid", "fusion": {"type": "weighted", "vector_weight": -1, "text_weight": 0}})),
    )
    .await;
    bad_request(status, &err);
    for mode in ["text", "hybrid"] {
        let (status, err) = call(
            &app,
            Method::POST,
            "/v1/conversations/nope/messages/search",
            Some(json!({"query": query, "mode": mode})),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{mode}: {err}"
        );
    }
    // In vector mode `min_score` is a cosine similarity.
    let (status, err) = call(
        &app,
        Method::POST,
        "/v1/conversations/emb/messages/search",
        Some(json!({"query": query, "min_score": 2})),
    )
    .await;
    bad_request(status, &err);
}
