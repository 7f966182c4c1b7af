//! Long-term memories through the HTTP API on the real model: dedupe within a scope (the same
//! content, or a paraphrase above the threshold), history of every change, expiry (hidden at once,
//! purged by the sweep), search by meaning within a scope, the context call (last messages, the
//! user's memories, collection chunks), erasure, conversation retention and tenant isolation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::conversations::{append, conversation};
use crate::api::documents::{call, collection};
use crate::api::helpers::{assert_error, json, spawn_app, spawn_app_with, TestApp};
use crate::api::runs::{call_as, q, time};

const PEANUTS: &str = "The user is allergic to peanuts.";
const PEANUTS_PARAPHRASE: &str = "The user has a peanut allergy.";
const WINDOW: &str = "The user prefers window seats on flights.";

/// Six distinct facts about one user, with a category, and for each a question that means it
/// without its words.
const FACTS: [(&str, &str, &str); 6] = [
    (PEANUTS, "health", "does the user have any food allergies"),
    (WINDOW, "travel", "which seat does the user want on a plane"),
    (
        "The user lives in Lisbon, Portugal.",
        "home",
        "where does the user live",
    ),
    (
        "The user works as a nurse at a hospital.",
        "work",
        "what is the user's job",
    ),
    (
        "The user has two cats named Miso and Tofu.",
        "home",
        "what pets does the user have",
    ),
    (
        "The user is learning to play the guitar.",
        "hobby",
        "what instrument is the user practicing",
    ),
];

/// POST /v1/memories with the owner key.
async fn add(app: &TestApp, body: Value) -> (u16, Value) {
    call(app, Method::POST, "/v1/memories", Some(body)).await
}

/// Adds a memory that must be new (201 `added`); returns the memory.
async fn added(app: &TestApp, body: Value) -> Value {
    let (status, written) = add(app, body.clone()).await;
    assert_eq!(
        (status, written["event"].as_str()),
        (201, Some("added")),
        "{body}: {written}"
    );
    written["memory"].clone()
}

fn id_of(memory: &Value) -> String {
    memory["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a memory with an id: {memory}"))
        .to_string()
}

/// POST /v1/memories/search; asserts 200.
async fn search(app: &TestApp, body: Value) -> Value {
    let (status, hits) = call(app, Method::POST, "/v1/memories/search", Some(body.clone())).await;
    assert_eq!(status, 200, "{body}: {hits}");
    hits
}

/// The contents of memory hits, best first.
fn contents(hits: &Value) -> Vec<String> {
    hits["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {hits}"))
        .iter()
        .map(|h| {
            h["memory"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("a hit with its memory: {h}"))
                .to_string()
        })
        .collect()
}

fn scores(hits: &Value) -> Vec<f64> {
    hits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap_or_else(|| panic!("a score: {h}")))
        .collect()
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {list}"))
        .iter()
        .map(id_of)
        .collect()
}

/// GET a path with the owner key; asserts 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = call(app, Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A 400 with either of the two body-error codes.
fn bad_request(status: u16, body: &Value, what: &Value) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(
        ["validation_failed", "invalid_request"].contains(&body["code"].as_str().unwrap_or("")),
        "{what}: {body}"
    );
}

/// Rows in `table` for `user`, read as the table owner.
async fn user_rows(app: &TestApp, table: &str, user: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"), &[&user])
        .await
        .unwrap()
        .get(0)
}

async fn memory_row_exists(app: &TestApp, id: &str) -> bool {
    let client = app.pool.get().await.unwrap();
    let id: uuid::Uuid = id.parse().unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM memories WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    n == 1
}

fn events(history: &Value) -> Vec<(String, String)> {
    history["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {history}"))
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap().to_string(),
                h["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

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
