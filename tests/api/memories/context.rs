//! The context call: last messages, the user's memories and collection chunks from one snapshot.

use super::*;

#[tokio::test]
async fn the_context_call_returns_the_last_messages_the_users_memories_and_the_policy() {
    let app = spawn_app().await;
    let query = "Can I get my money back for the blender that stopped working?";
    let blender = "The user bought a blender on March 3 (order 1182) and it broke after a week.";
    conversation(&app, json!({"id": "sess-1", "user_id": "u1"})).await;
    let turns: Vec<_> = (1..=8)
        .map(|i| json!({"role": if i % 2 == 1 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
        .collect();
    append(&app, "sess-1", json!({"messages": turns})).await;
    let mut u1 = vec![];
    for content in [
        blender,
        "The user prefers to be contacted by email, not phone.",
        "The user lives in Lisbon, Portugal.",
    ] {
        u1.push(added(&app, json!({"content": content, "user_id": "u1"})).await);
    }
    added(&app, json!({"content": blender, "user_id": "u2"})).await;
    added(
        &app,
        json!({"content": "The user asked about refunds for a broken blender.", "user_id": "u2"}),
    )
    .await;
    collection(&app, json!({"name": "policies"})).await;
    let policies = [
        (
            "refunds",
            "Refunds: products that are faulty or stop working within 30 days of delivery are refunded in full.",
        ),
        (
            "shipping",
            "Shipping: orders leave our warehouse within two business days.",
        ),
        (
            "privacy",
            "Privacy: we never sell or share customer data with third parties.",
        ),
        (
            "hours",
            "Store hours: our support line is open Monday to Friday, 9am to 6pm.",
        ),
    ];
    let docs: Vec<_> = policies
        .iter()
        .map(|(id, text)| json!({"id": id, "text": text}))
        .collect();
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/collections/policies/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let context = |body: Value| {
        let app = &app;
        async move { call(app, Method::POST, "/v1/conversations/sess-1/context", Some(body)).await }
    };
    let (status, ctx) = context(json!({"query": query, "last_messages": 3, "memories": {"k": 5}, "collections": {"names": ["policies"], "k": 2}})).await;
    let (_, direct_memories) = call(
        &app,
        Method::POST,
        "/v1/memories/search",
        Some(json!({"query": query, "user_id": "u1", "k": 5})),
    )
    .await;
    let (_, direct_policies) = call(
        &app,
        Method::POST,
        "/v1/collections/policies/search",
        Some(json!({"query": query, "k": 2})),
    )
    .await;
    let (_, defaults) = context(json!({"query": query})).await;
    let (_, none) = context(json!({"query": query, "last_messages": 0, "memories": {"min_score": 0.5}})).await;

    assert_eq!(status, 200, "{ctx}");
    assert_eq!(
        (ctx["conversation_id"].as_str(), ctx["user_id"].as_str()),
        (Some("sess-1"), Some("u1")),
        "{ctx}"
    );
    let messages = ctx["messages"].as_array().unwrap_or_else(|| panic!("messages: {ctx}"));
    let seqs: Vec<_> = messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [6, 7, 8], "the last 3, ascending: {ctx}");
    assert_eq!(
        messages
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["turn 6", "turn 7", "turn 8"]
    );
    assert_eq!(messages[0]["conversation_id"], "sess-1");
    let memories = ctx["memories"].as_array().unwrap_or_else(|| panic!("memories: {ctx}"));
    assert_eq!(memories.len(), 3, "all three of u1's and none of u2's: {ctx}");
    assert!(memories.iter().all(|h| h["memory"]["user_id"] == "u1"), "{ctx}");
    assert_eq!(memories[0]["memory"], u1[0], "the relevant memory first: {ctx}");
    assert_eq!(
        ctx["memories"], direct_memories["data"],
        "the same hits as a memory search"
    );
    let collections = ctx["collections"]
        .as_array()
        .unwrap_or_else(|| panic!("collections: {ctx}"));
    assert_eq!(collections.len(), 1, "{ctx}");
    assert_eq!(collections[0]["collection"], "policies");
    let hits = collections[0]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "k chunks: {ctx}");
    assert_eq!(hits[0]["document_id"], "refunds", "the refund policy: {ctx}");
    assert_eq!(hits[0]["text"], policies[0].1);
    let doc_ids = |hits: &Value| {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        doc_ids(&collections[0]["hits"]),
        doc_ids(&direct_policies["hits"]),
        "as the collection's search: {direct_policies}"
    );
    let (a, b) = (
        hits[0]["score"].as_f64().unwrap(),
        direct_policies["hits"][0]["score"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-6, "the same score: {a} {b}");
    assert_eq!(
        defaults["messages"].as_array().map(Vec::len),
        Some(8),
        "20 by default: all 8: {defaults}"
    );
    assert_eq!(none["messages"], json!([]), "{none}");
    assert_eq!(
        none["memories"]
            .as_array()
            .map(|m| m.iter().map(|h| h["memory"].clone()).collect::<Vec<_>>()),
        Some(vec![u1[0].clone()]),
        "min_score: {none}"
    );

    // Refusals.
    let unknown_collection = app
        .with(Method::POST, "/v1/conversations/sess-1/context", &app.owner_key)
        .json(&json!({"query": query, "collections": {"names": ["policies", "nope"]}}))
        .send()
        .await
        .unwrap();
    assert_error(unknown_collection, 404, "not_found").await;
    let unknown_conversation = app
        .with(Method::POST, "/v1/conversations/nope/context", &app.owner_key)
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    assert_error(unknown_conversation, 404, "not_found").await;
    for last in [json!(-1), json!(501), json!("three"), json!(2.5)] {
        let body = json!({"query": query, "last_messages": last});
        let res = app
            .with(Method::POST, "/v1/conversations/sess-1/context", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err, &body);
    }
    let (max_status, max) = context(json!({"query": query, "last_messages": 500})).await;
    assert_eq!(
        (max_status, max["messages"].as_array().map(Vec::len)),
        (200, Some(8)),
        "{max}"
    );
    for body in [
        json!({"query": ""}),
        json!({"last_messages": 3}),
        json!({"query": query, "memories": {"k": 0}}),
        json!({"query": query, "collections": {"names": []}}),
        json!({"query": query, "collections": {"names": ["policies"], "k": 101}}),
        json!({"query": query, "extra": true}),
    ] {
        let res = app
            .with(Method::POST, "/v1/conversations/sess-1/context", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err, &body);
    }
}
