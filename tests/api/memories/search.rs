//! Memory search within a scope, and a memory's changes and history.

use super::*;

#[tokio::test]
async fn search_finds_the_paraphrased_fact_first_and_only_in_the_scope() {
    let app = spawn_app().await;
    let mut u1 = vec![];
    for (content, category, _) in FACTS {
        u1.push(
            added(
                &app,
                json!({"content": content, "user_id": "u1", "metadata": {"category": category}}),
            )
            .await,
        );
    }
    let u2_peanuts = added(
        &app,
        json!({"content": PEANUTS, "user_id": "u2", "metadata": {"category": "health"}}),
    )
    .await;
    added(
        &app,
        json!({"content": "The user lives in Berlin, Germany.", "user_id": "u2", "metadata": {"category": "home"}}),
    )
    .await;
    added(
        &app,
        json!({"content": "The user lives in Lisbon, Portugal.", "agent_id": "planner"}),
    )
    .await;

    for (content, _, question) in FACTS {
        let hits = search(&app, json!({"query": question, "user_id": "u1"})).await;
        assert_eq!(
            contents(&hits)[0],
            content,
            "{question:?} finds {content:?} first: {hits}"
        );
        assert_eq!(contents(&hits).len(), 6, "k defaults to 10: all six of u1's: {hits}");
        assert!(
            hits["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["memory"]["user_id"] == "u1"),
            "only u1's memories: {hits}"
        );
        let s = scores(&hits);
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "best first: {s:?}");
        assert!(s[0] > 0.5 && s[0] <= 1.0, "cosine similarity: {s:?}");
    }
    let u2 = search(
        &app,
        json!({"query": "does the user have any food allergies", "user_id": "u2"}),
    )
    .await;
    let u2_home = search(&app, json!({"query": "where does the user live", "user_id": "u2"})).await;
    let agent = search(
        &app,
        json!({"query": "where does the user live", "agent_id": "planner"}),
    )
    .await;
    let nobody = search(&app, json!({"query": "where does the user live", "user_id": "u3"})).await;
    let k2 = search(
        &app,
        json!({"query": "what pets does the user have", "user_id": "u1", "k": 2}),
    )
    .await;
    let home = search(
        &app,
        json!({"query": "what pets does the user have", "user_id": "u1", "filter": {"category": "home"}}),
    )
    .await;
    let in_set = search(&app, json!({"query": "what pets does the user have", "user_id": "u1", "filter": {"category": {"$in": ["work", "hobby"]}}})).await;
    let min = search(
        &app,
        json!({"query": "where does the user live", "user_id": "u1", "min_score": 0.5}),
    )
    .await;
    let strict = search(
        &app,
        json!({"query": "where does the user live", "user_id": "u1", "min_score": 0.99}),
    )
    .await;
    let exact = search(&app, json!({"query": FACTS[3].0, "user_id": "u1", "k": 1})).await;

    assert_eq!(
        contents(&u2),
        [PEANUTS, "The user lives in Berlin, Germany."],
        "u2's own two: {u2}"
    );
    assert_eq!(
        id_of(&u2["data"][0]["memory"]),
        id_of(&u2_peanuts),
        "u2's copy, not u1's"
    );
    assert_eq!(contents(&u2_home)[0], "The user lives in Berlin, Germany.");
    assert_eq!(
        contents(&agent),
        ["The user lives in Lisbon, Portugal."],
        "the agent's scope: {agent}"
    );
    assert_eq!(agent["data"][0]["memory"]["user_id"], Value::Null);
    assert_eq!(nobody["data"], json!([]));
    assert_eq!(contents(&k2).len(), 2);
    assert_eq!(contents(&k2)[0], FACTS[4].0);
    assert_eq!(contents(&home), [FACTS[4].0, FACTS[2].0], "the metadata filter: {home}");
    assert_eq!(
        contents(&in_set).into_iter().collect::<HashSet<_>>(),
        HashSet::from([FACTS[3].0.to_string(), FACTS[5].0.to_string()]),
        "{in_set}"
    );
    assert_eq!(contents(&min), [FACTS[2].0], "only the one at 0.5 or above: {min}");
    assert!(scores(&min)[0] >= 0.5);
    assert_eq!(strict["data"], json!([]), "no paraphrase scores 0.99: {strict}");
    assert!(scores(&exact)[0] > 0.999, "the content itself scores 1: {exact}");
    assert_eq!(exact["data"][0]["memory"], u1[3], "a hit carries the memory: {exact}");

    // Refused searches.
    let no_scope = app
        .with(Method::POST, "/v1/memories/search", &app.owner_key)
        .json(&json!({"query": "allergies"}))
        .send()
        .await
        .unwrap();
    assert_error(no_scope, 400, "validation_failed").await;
    for body in [
        json!({"query": "", "user_id": "u1"}),
        json!({"query": "x", "user_id": "u1", "k": 0}),
        json!({"query": "x", "user_id": "u1", "k": 101}),
        json!({"query": "x", "user_id": "u1", "min_score": 2}),
        json!({"query": "x", "user_id": "u#1"}),
        json!({"query": "x", "user_id": "u1", "bogus": 1}),
    ] {
        let res = app
            .with(Method::POST, "/v1/memories/search", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err, &body);
    }
    let bad_filter = app
        .with(Method::POST, "/v1/memories/search", &app.owner_key)
        .json(&json!({"query": "x", "user_id": "u1", "filter": {"category": {"$bad": 1}}}))
        .send()
        .await
        .unwrap();
    assert_error(bad_filter, 400, "invalid_filter").await;

    // The list: newest first, in pages.
    let newest_first: Vec<String> = u1.iter().rev().map(id_of).collect();
    let page1 = get_ok(&app, "/v1/memories?user_id=u1&limit=4").await;
    let cursor = page1["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a second page: {page1}"))
        .to_string();
    let page2 = get_ok(&app, &format!("/v1/memories?user_id=u1&limit=4&cursor={}", q(&cursor))).await;
    assert_eq!(listed_ids(&page1), newest_first[..4], "{page1}");
    assert_eq!(listed_ids(&page2), newest_first[4..], "{page2}");
    assert_eq!(page2["next_cursor"], Value::Null);
    assert_eq!(page1["data"][3], u1[2], "listed as written");
    let agent_list = get_ok(&app, "/v1/memories?agent_id=planner").await;
    assert_eq!(listed_ids(&agent_list).len(), 1, "{agent_list}");
    let bad_limit = app
        .with(Method::GET, "/v1/memories?user_id=u1&limit=0", &app.owner_key)
        .send()
        .await
        .unwrap();
    let (status, err) = json(bad_limit).await;
    bad_request(status, &err, &json!("limit=0"));
}

#[tokio::test]
async fn patch_re_embeds_the_content_and_delete_keeps_the_history() {
    let app = spawn_app().await;
    let lisbon = "The user lives in Lisbon, Portugal.";
    let tokyo = "The user moved to Tokyo, Japan.";
    let memory = added(
        &app,
        json!({"content": lisbon, "user_id": "u1", "metadata": {"category": "home"}}),
    )
    .await;
    added(&app, json!({"content": FACTS[3].0, "user_id": "u1"})).await;
    added(&app, json!({"content": FACTS[4].0, "user_id": "u1"})).await;
    let id = id_of(&memory);
    let path = format!("/v1/memories/{id}");

    let (patch_status, patched) = call(&app, Method::PATCH, &path, Some(json!({"content": tokyo}))).await;
    let reread = get_ok(&app, &path).await;
    let japan = search(
        &app,
        json!({"query": "which city in Japan does the user live in", "user_id": "u1"}),
    )
    .await;
    let exact_new = search(&app, json!({"query": tokyo, "user_id": "u1", "k": 1})).await;
    let exact_old = search(&app, json!({"query": lisbon, "user_id": "u1", "k": 1})).await;
    let (meta_status, meta) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"metadata": {"category": "home", "moved": true}})),
    )
    .await;
    let (ttl_status, with_ttl) = call(&app, Method::PATCH, &path, Some(json!({"ttl_seconds": 3600}))).await;
    let mut refused = vec![];
    for body in [
        json!({"content": ""}),
        json!({"content": "x".repeat(10_001)}),
        json!({"ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"}),
        json!({"metadata": "x"}),
        json!({"user_id": "u2"}),
    ] {
        let res = app
            .with(Method::PATCH, &path, &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        refused.push((body, status, err));
    }
    let after_refusals = get_ok(&app, &path).await;

    assert_eq!(patch_status, 200, "{patched}");
    assert_eq!(id_of(&patched), id);
    assert_eq!(patched["content"], tokyo);
    assert_eq!(
        patched["metadata"],
        json!({"category": "home"}),
        "untouched fields stay"
    );
    assert_eq!(patched["user_id"], "u1");
    assert_eq!(patched["created_at"], memory["created_at"]);
    assert!(time(&patched["updated_at"]) > time(&memory["updated_at"]));
    assert_eq!(reread, patched, "the patch is stored");
    assert_eq!(contents(&japan)[0], tokyo, "search finds the new content: {japan}");
    assert!(
        scores(&exact_new)[0] > 0.999,
        "the vector is the new content's: {exact_new}"
    );
    assert_eq!(id_of(&exact_old["data"][0]["memory"]), id, "{exact_old}");
    assert!(
        scores(&exact_old)[0] < 0.9,
        "no longer the old content's vector: {exact_old}"
    );
    assert_eq!(meta_status, 200, "{meta}");
    assert_eq!(
        (meta["metadata"].clone(), meta["content"].as_str()),
        (json!({"category": "home", "moved": true}), Some(tokyo)),
        "metadata is replaced: {meta}"
    );
    assert_eq!(ttl_status, 200, "{with_ttl}");
    let lifetime = time(&with_ttl["expires_at"]) - time(&with_ttl["updated_at"]);
    assert!(
        (lifetime - chrono::Duration::seconds(3600)).num_seconds().abs() <= 1,
        "expires in an hour: {with_ttl}"
    );
    for (body, status, err) in &refused {
        bad_request(*status, err, body);
    }
    assert_eq!(after_refusals, with_ttl, "the refused patches changed nothing");

    let (del_status, _) = call(&app, Method::DELETE, &path, None).await;
    let gone = app.with(Method::GET, &path, &app.owner_key).send().await.unwrap();
    let again = app.with(Method::DELETE, &path, &app.owner_key).send().await.unwrap();
    let patch_gone = app
        .with(Method::PATCH, &path, &app.owner_key)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    let history = get_ok(&app, &format!("{path}/history")).await;
    let japan_after = search(
        &app,
        json!({"query": "which city in Japan does the user live in", "user_id": "u1"}),
    )
    .await;
    let listed = get_ok(&app, "/v1/memories?user_id=u1").await;

    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    assert_error(again, 404, "not_found").await;
    assert_error(patch_gone, 404, "not_found").await;
    assert!(!memory_row_exists(&app, &id).await);
    assert!(!contents(&japan_after).contains(&tokyo.to_string()), "{japan_after}");
    assert_eq!(listed_ids(&listed).len(), 2, "{listed}");
    assert_eq!(
        events(&history),
        pairs(&[
            ("add", "request"),
            ("update", "request"),
            ("update", "request"),
            ("update", "request"),
            ("delete", "request")
        ]),
        "the history is kept after the delete: {history}"
    );
    let h = history["data"].as_array().unwrap();
    assert_eq!(
        (h[1]["old_content"].as_str(), h[1]["new_content"].as_str()),
        (Some(lisbon), Some(tokyo)),
        "{}",
        h[1]
    );
    assert_eq!(
        (h[2]["old_metadata"].clone(), h[2]["new_metadata"].clone()),
        (json!({"category": "home"}), json!({"category": "home", "moved": true}))
    );
    assert_eq!(
        (h[4]["old_content"].as_str(), h[4]["new_content"].clone()),
        (Some(tokyo), Value::Null),
        "{}",
        h[4]
    );
}

#[tokio::test]
async fn text_and_hybrid_search_rank_a_scopes_memories_by_their_words() {
    let app = spawn_app().await;
    for (content, category, _) in FACTS {
        added(
            &app,
            json!({"content": content, "user_id": "u1", "metadata": {"category": category}}),
        )
        .await;
    }
    added(
        &app,
        json!({"content": "Tofu is the user's favourite food.", "user_id": "u2"}),
    )
    .await;

    // A name the embedding knows nothing of: the words find it, in the scope only.
    let tofu = search(&app, json!({"query": "Tofu", "user_id": "u1", "mode": "text"})).await;
    assert_eq!(contents(&tofu), [FACTS[4].0], "{tofu}");
    assert!(scores(&tofu)[0] > 0.0, "a BM25 score: {tofu}");
    assert_eq!(tofu["data"][0]["scores"]["text"], tofu["data"][0]["score"], "{tofu}");
    assert_eq!(tofu["text_reason"], Value::Null);
    // "user" is in every memory and weighs next to nothing; "nurse" decides.
    let nurse = search(
        &app,
        json!({"query": "user user nurse", "user_id": "u1", "mode": "text"}),
    )
    .await;
    assert_eq!(contents(&nurse)[0], FACTS[3].0, "{nurse}");
    assert_eq!(contents(&nurse).len(), 6, "every memory says user: {nurse}");
    let s = scores(&nurse);
    assert!(s[0] > 2.0 * s[1], "the rare word outweighs the common one: {s:?}");
    // The metadata filter and the phrase syntax apply as in the vector search.
    let home = search(
        &app,
        json!({"query": "user", "user_id": "u1", "mode": "text", "filter": {"category": "home"}}),
    )
    .await;
    assert_eq!(contents(&home).len(), 2, "{home}");
    let phrase = search(
        &app,
        json!({"query": "\"lives in\" -Portugal", "user_id": "u1", "mode": "text"}),
    )
    .await;
    assert_eq!(phrase["data"], json!([]), "{phrase}");
    assert_eq!(phrase["text_reason"], "no_match", "{phrase}");

    // Hybrid: the meaning finds the fact, the words back it; both sides' scores are given.
    let hybrid = search(
        &app,
        json!({"query": "which seat on a plane does the user prefer", "user_id": "u1", "mode": "hybrid"}),
    )
    .await;
    assert_eq!(contents(&hybrid)[0], FACTS[1].0, "{hybrid}");
    let top = &hybrid["data"][0]["scores"];
    assert!(top["vector"].is_f64() && top["text"].is_f64(), "{top}");
    let s = scores(&hybrid);
    assert!(s.windows(2).all(|w| w[0] >= w[1]), "best first: {s:?}");
    assert_eq!(s.len(), 6, "{hybrid}");
}
