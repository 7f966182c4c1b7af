//! Adding memories: the same fact once, a paraphrase updated or kept apart by the threshold, refused input, expiry and its sweep.

use super::*;

#[tokio::test]
async fn the_same_fact_twice_is_one_memory_and_a_paraphrase_updates_it() {
    let app = spawn_app_with(|c| c.memory_dedupe_threshold = 0.8).await;

    let (s_first, first) = add(
        &app,
        json!({"content": PEANUTS, "user_id": "u1", "metadata": {"category": "health"}}),
    )
    .await;
    let (s_same, same) = add(
        &app,
        json!({"content": PEANUTS, "user_id": "u1", "metadata": {"category": "health"}}),
    )
    .await;
    let (s_para, para) = add(&app, json!({"content": PEANUTS_PARAPHRASE, "user_id": "u1"})).await;
    let (s_other, other) = add(&app, json!({"content": WINDOW, "user_id": "u1"})).await;
    let (s_u2, u2) = add(&app, json!({"content": PEANUTS, "user_id": "u2"})).await;
    let (s_agent, agent) = add(
        &app,
        json!({"content": PEANUTS_PARAPHRASE, "user_id": "u1", "agent_id": "planner"}),
    )
    .await;
    let (s_again, again) = add(&app, json!({"content": PEANUTS_PARAPHRASE, "user_id": "u1"})).await;
    let (s_meta, meta) = add(
        &app,
        json!({"content": PEANUTS_PARAPHRASE, "user_id": "u1", "metadata": {"category": "health", "severity": "high"}}),
    )
    .await;

    // The first add.
    assert_eq!((s_first, first["event"].as_str()), (201, Some("added")), "{first}");
    assert_eq!(
        (first["previous_content"].clone(), first["similarity"].clone()),
        (Value::Null, Value::Null),
        "{first}"
    );
    let m = &first["memory"];
    let id = id_of(m);
    id.parse::<uuid::Uuid>()
        .unwrap_or_else(|e| panic!("a uuid id ({e}): {m}"));
    assert_eq!(m["content"], PEANUTS);
    assert_eq!(
        (m["user_id"].as_str(), m["agent_id"].clone(), m["run_id"].clone()),
        (Some("u1"), Value::Null, Value::Null),
        "{m}"
    );
    assert_eq!(m["metadata"], json!({"category": "health"}));
    assert_eq!(m["expires_at"], Value::Null);
    time(&m["created_at"]);
    time(&m["updated_at"]);
    // The same content again: nothing changes.
    assert_eq!((s_same, same["event"].as_str()), (200, Some("unchanged")), "{same}");
    assert_eq!(same["memory"], first["memory"], "the memory as it was: {same}");
    // A paraphrase above the threshold replaces the content of the same memory.
    assert_eq!((s_para, para["event"].as_str()), (200, Some("updated")), "{para}");
    assert_eq!(id_of(&para["memory"]), id, "the same memory: {para}");
    assert_eq!(para["memory"]["content"], PEANUTS_PARAPHRASE);
    assert_eq!(para["previous_content"], PEANUTS);
    let similarity = para["similarity"]
        .as_f64()
        .unwrap_or_else(|| panic!("a similarity: {para}"));
    assert!(
        (0.8..1.0).contains(&similarity),
        "at or above the threshold, not identical: {similarity}"
    );
    assert_eq!(
        para["memory"]["metadata"],
        json!({"category": "health"}),
        "metadata not given: kept"
    );
    assert_eq!(para["memory"]["created_at"], m["created_at"]);
    assert!(time(&para["memory"]["updated_at"]) > time(&m["updated_at"]), "{para}");
    // A different fact, another user, another scope: new memories.
    assert_eq!(
        (s_other, other["event"].as_str()),
        (201, Some("added")),
        "a different fact is added: {other}"
    );
    assert_eq!(
        (s_u2, u2["event"].as_str()),
        (201, Some("added")),
        "the same content for another user is separate: {u2}"
    );
    assert_eq!(u2["memory"]["user_id"], "u2");
    assert_eq!(
        (s_agent, agent["event"].as_str()),
        (201, Some("added")),
        "user u1 with agent planner is another scope: {agent}"
    );
    assert_eq!(agent["memory"]["agent_id"], "planner");
    let ids: HashSet<_> = [&first, &other, &u2, &agent]
        .iter()
        .map(|w| id_of(&w["memory"]))
        .collect();
    assert_eq!(ids.len(), 4, "four memories");
    // The updated content is what the scope now holds; other metadata updates it.
    assert_eq!(
        (s_again, again["event"].as_str(), id_of(&again["memory"])),
        (200, Some("unchanged"), id.clone()),
        "{again}"
    );
    assert_eq!(
        (s_meta, meta["event"].as_str(), id_of(&meta["memory"])),
        (200, Some("updated"), id.clone()),
        "{meta}"
    );
    assert_eq!(
        meta["memory"]["metadata"],
        json!({"category": "health", "severity": "high"})
    );
    assert_eq!(meta["memory"]["content"], PEANUTS_PARAPHRASE);

    let (_, u1_all) = call(&app, Method::GET, "/v1/memories?user_id=u1", None).await;
    let (_, u1_planner) = call(&app, Method::GET, "/v1/memories?user_id=u1&agent_id=planner", None).await;
    let u1_rows = user_rows(&app, "memories", "u1").await;
    let history = get_ok(&app, &format!("/v1/memories/{id}/history")).await;

    assert_eq!(
        listed_ids(&u1_all).len(),
        3,
        "u1: the allergy, the seat, the planner's copy: {u1_all}"
    );
    assert_eq!(listed_ids(&u1_planner), [id_of(&agent["memory"])]);
    assert_eq!(u1_rows, 3, "one row for the allergy, not one per write");
    assert_eq!(
        events(&history),
        pairs(&[("add", "request"), ("update", "similar"), ("update", "duplicate")]),
        "{history}"
    );
    let h = history["data"].as_array().unwrap();
    assert_eq!(
        (h[0]["old_content"].clone(), h[0]["new_content"].as_str()),
        (Value::Null, Some(PEANUTS)),
        "{}",
        h[0]
    );
    assert_eq!(h[0]["new_metadata"], json!({"category": "health"}));
    assert_eq!(
        (h[1]["old_content"].as_str(), h[1]["new_content"].as_str()),
        (Some(PEANUTS), Some(PEANUTS_PARAPHRASE)),
        "{}",
        h[1]
    );
    assert_eq!(
        (h[2]["old_content"].as_str(), h[2]["new_content"].as_str()),
        (Some(PEANUTS_PARAPHRASE), Some(PEANUTS_PARAPHRASE)),
        "{}",
        h[2]
    );
    assert_eq!(
        (h[2]["old_metadata"].clone(), h[2]["new_metadata"].clone()),
        (
            json!({"category": "health"}),
            json!({"category": "health", "severity": "high"})
        )
    );
    let at: Vec<_> = h.iter().map(|c| time(&c["created_at"])).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "oldest first: {history}");
}

#[tokio::test]
async fn below_the_default_threshold_a_paraphrase_is_a_separate_memory() {
    // The window-seat paraphrase is about 0.74 from the original: under 0.9, so it is added.
    let app = spawn_app().await;
    let first = added(&app, json!({"content": WINDOW, "user_id": "u1"})).await;
    let (status, second) = add(
        &app,
        json!({"content": "The user likes to sit by the window when flying.", "user_id": "u1"}),
    )
    .await;
    let (same_status, same) = add(&app, json!({"content": WINDOW, "user_id": "u1"})).await;

    assert_eq!((status, second["event"].as_str()), (201, Some("added")), "{second}");
    assert_ne!(id_of(&second["memory"]), id_of(&first));
    assert_eq!(
        (same_status, same["event"].as_str(), id_of(&same["memory"])),
        (200, Some("unchanged"), id_of(&first)),
        "{same}"
    );
    assert_eq!(user_rows(&app, "memories", "u1").await, 2);
}

#[tokio::test]
async fn refused_memory_writes_say_why_and_write_nothing() {
    let app = spawn_app().await;
    let no_scope = app
        .with(Method::POST, "/v1/memories", &app.owner_key)
        .json(&json!({"content": PEANUTS}))
        .send()
        .await
        .unwrap();
    assert_error(no_scope, 400, "validation_failed").await;
    let both = app
        .with(Method::POST, "/v1/memories", &app.owner_key)
        .json(&json!({"content": PEANUTS, "user_id": "u1", "ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_error(both, 400, "validation_failed").await;
    for body in [
        json!({"content": "", "user_id": "u1"}),
        json!({"content": "   ", "user_id": "u1"}),
        json!({"content": "x".repeat(10_001), "user_id": "u1"}),
        json!({"content": PEANUTS, "user_id": ""}),
        json!({"content": PEANUTS, "user_id": "u#1"}),
        json!({"content": PEANUTS, "agent_id": "a b"}),
        json!({"content": PEANUTS, "run_id": "r".repeat(257)}),
        json!({"content": PEANUTS, "user_id": "u1", "metadata": [1, 2]}),
        json!({"content": PEANUTS, "user_id": "u1", "ttl_seconds": 0}),
        json!({"content": PEANUTS, "user_id": "u1", "expires_at": "tomorrow"}),
        json!({"content": PEANUTS, "user_id": "u1", "unknown": true}),
        json!({"user_id": "u1"}),
    ] {
        let res = app
            .with(Method::POST, "/v1/memories", &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        bad_request(status, &err, &body);
    }
    let client = app.pool.get().await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM memories", &[])
        .await
        .unwrap()
        .get(0);
    let history: i64 = client
        .query_one("SELECT count(*) FROM memory_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((rows, history), (0, 0), "the refused writes wrote nothing");

    // The longest content, an agent-only scope and a run-only scope are fine.
    let longest = added(&app, json!({"content": "word ".repeat(2_000), "user_id": "u1"})).await;
    assert_eq!(longest["content"].as_str().unwrap().chars().count(), 10_000);
    let agent_only = added(&app, json!({"content": PEANUTS, "agent_id": "planner"})).await;
    assert_eq!(
        (agent_only["user_id"].clone(), agent_only["agent_id"].as_str()),
        (Value::Null, Some("planner")),
        "{agent_only}"
    );
    let run_only = added(&app, json!({"content": PEANUTS, "run_id": "run-1"})).await;
    assert_eq!(run_only["run_id"], "run-1");

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::GET, format!("/v1/memories/{unknown}")),
        (Method::DELETE, format!("/v1/memories/{unknown}")),
        (Method::GET, format!("/v1/memories/{unknown}/history")),
    ] {
        let res = app.with(method.clone(), &path, &app.owner_key).send().await.unwrap();
        assert_error(res, 404, "not_found").await;
    }
    let patch_unknown = app
        .with(Method::PATCH, &format!("/v1/memories/{unknown}"), &app.owner_key)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(patch_unknown, 404, "not_found").await;
    // An id that is not a UUID names no memory.
    let not_uuid = app
        .with(Method::GET, "/v1/memories/not-a-uuid", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(not_uuid, 404, "not_found").await;
}

#[tokio::test]
async fn an_expired_memory_is_hidden_at_once_without_a_sweep() {
    let app = spawn_app().await; // the sweep runs every 60 s: not during this test
    let keep = added(&app, json!({"content": WINDOW, "user_id": "u1"})).await;
    let until = "2099-01-01T00:00:00Z";
    let dated = added(
        &app,
        json!({"content": "The user lives in Lisbon, Portugal.", "user_id": "u1", "expires_at": until}),
    )
    .await;
    let short = added(&app, json!({"content": PEANUTS, "user_id": "u1", "ttl_seconds": 4})).await;
    let id = id_of(&short);
    let get_path = format!("/v1/memories/{id}");
    let (got, listed, found) = tokio::join!(
        call(&app, Method::GET, &get_path, None),
        call(&app, Method::GET, "/v1/memories?user_id=u1", None),
        search(&app, json!({"query": "food allergies", "user_id": "u1"})),
    );

    let expires_at = time(&short["expires_at"]);
    let lifetime = expires_at - time(&short["created_at"]);
    assert!(
        lifetime > chrono::Duration::milliseconds(3900) && lifetime < chrono::Duration::milliseconds(4100),
        "four seconds: {short}"
    );
    assert_eq!(time(&dated["expires_at"]), time(&json!(until)), "{dated}");
    assert_eq!(got, (200, short.clone()), "readable before it expires");
    assert_eq!(listed.0, 200);
    assert!(
        listed_ids(&listed.1).contains(&id),
        "listed before it expires: {}",
        listed.1
    );
    assert_eq!(contents(&found)[0], PEANUTS, "found before it expires: {found}");

    let wait = (expires_at - chrono::Utc::now().fixed_offset())
        .to_std()
        .unwrap_or_default()
        + Duration::from_millis(200);
    tokio::time::sleep(wait).await;
    let gone = app.with(Method::GET, &get_path, &app.owner_key).send().await.unwrap();
    assert_error(gone, 404, "not_found").await;
    let listed = get_ok(&app, "/v1/memories?user_id=u1").await;
    let found = search(&app, json!({"query": "food allergies", "user_id": "u1"})).await;
    assert_eq!(
        listed_ids(&listed),
        [id_of(&dated), id_of(&keep)],
        "the expired memory is not listed: {listed}"
    );
    assert!(!contents(&found).contains(&PEANUTS.to_string()), "nor found: {found}");
    assert_eq!(contents(&found).len(), 2);
    assert!(
        memory_row_exists(&app, &id).await,
        "hidden by its expiry, not removed: no sweep ran"
    );
    // The expired memory is no longer a duplicate: the same fact is added anew.
    let (status, again) = add(&app, json!({"content": PEANUTS, "user_id": "u1"})).await;
    assert_eq!((status, again["event"].as_str()), (201, Some("added")), "{again}");
    assert_ne!(id_of(&again["memory"]), id);
    assert_eq!(again["memory"]["expires_at"], Value::Null);
}

#[tokio::test]
async fn the_sweep_deletes_expired_memories_and_records_why() {
    let app = spawn_app_with(|c| c.sweep_interval_secs = 1.0).await;
    let keep = added(&app, json!({"content": WINDOW, "user_id": "u1", "ttl_seconds": 3600})).await;
    let short = added(
        &app,
        json!({"content": PEANUTS, "user_id": "u1", "metadata": {"category": "health"}, "ttl_seconds": 1}),
    )
    .await;
    let id = id_of(&short);

    let start = Instant::now();
    while memory_row_exists(&app, &id).await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the sweep did not delete the expired memory in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let history = get_ok(&app, &format!("/v1/memories/{id}/history")).await;
    let kept = get_ok(&app, &format!("/v1/memories/{}", id_of(&keep))).await;

    assert_eq!(
        events(&history),
        pairs(&[("add", "request"), ("delete", "expired")]),
        "{history}"
    );
    let deleted = &history["data"][1];
    assert_eq!(
        (deleted["old_content"].as_str(), deleted["new_content"].clone()),
        (Some(PEANUTS), Value::Null),
        "{deleted}"
    );
    assert_eq!(deleted["old_metadata"], json!({"category": "health"}));
    assert!(
        time(&deleted["created_at"]) >= time(&short["expires_at"]),
        "deleted after it expired: {deleted}"
    );
    assert_eq!(kept, keep, "a memory that has not expired stays");
    assert!(memory_row_exists(&app, &id_of(&keep)).await);
}
