//! Cache entries: change detection on canonical JSON, freshness, listing, deletion and refused input.

use super::*;

#[tokio::test]
async fn put_detects_changes_on_canonical_json_and_keeps_the_history() {
    let app = spawn_app().await;
    let data = json!({"b": 1, "a": [1, 2, {"y": true, "x": null}], "c": "text"});
    let canonical = r#"{"a":[1,2,{"x":null,"y":true}],"b":1,"c":"text"}"#;

    let (s1, first) = put(
        &app,
        "tools/weather:paris",
        json!({"data": data, "metadata": {"source": "api"}}),
    )
    .await;
    let (_, read1) = get(&app, "tools/weather:paris").await;
    let (s2, same) = put_raw(&app, "tools/weather:paris",
        "{ \"metadata\": {\"source\":\"api\"},\n  \"data\" : {\"c\":\"text\",\n\t\"a\" : [ 1 , 2 , { \"x\" : null , \"y\" : true } ] , \"b\":1 } }").await;
    let (_, history_after_same) = get(&app, "tools/weather:paris/history").await;
    let (s3, changed) = put(
        &app,
        "tools/weather:paris",
        json!({"data": {"a": 2}, "metadata": {"source": "api"}}),
    )
    .await;
    let (_, history1) = get(&app, "tools/weather:paris/history").await;
    let (_, read2) = get(&app, "tools/weather:paris").await;
    let (s4, third) = put(&app, "tools/weather:paris", json!({"data": [3]})).await;
    let (_, history2) = get(&app, "tools/weather:paris/history").await;

    assert_eq!(s1, 201, "{first}");
    assert_eq!(first["namespace"], "tools");
    assert_eq!(first["key"], "weather:paris");
    assert_eq!(first["data"], data);
    assert_eq!(first["metadata"], json!({"source": "api"}));
    assert_eq!(
        (first["changed"].as_bool(), first["created"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(first["version"], 1);
    assert_eq!(
        first["content_hash"],
        sha256(canonical),
        "sha256 of sorted keys, no whitespace: {first}"
    );
    assert_eq!(first["stale"], false);
    assert_eq!(first["indexed_in"], Value::Null);
    let ttl = time(&first["expires_at"]) - time(&first["fetched_at"]);
    assert_eq!(ttl.num_seconds(), 86_400, "the default TTL is a day: {first}");
    assert!(first["age_seconds"].as_f64().unwrap() >= 0.0);
    for field in ["changed_at", "created_at"] {
        time(&first[field]);
    }

    assert_eq!(read1["data"], data);
    assert_eq!(read1["content_hash"], first["content_hash"]);
    assert!(
        read1.get("changed").is_none() && read1.get("created").is_none(),
        "GET has no changed/created: {read1}"
    );

    assert_eq!(s2, 200, "{same}");
    assert_eq!(
        (same["changed"].as_bool(), same["created"].as_bool()),
        (Some(false), Some(false)),
        "{same}"
    );
    assert_eq!(same["content_hash"], first["content_hash"]);
    assert_eq!(same["version"], 1);
    assert_eq!(same["changed_at"], first["changed_at"], "no change, same changed_at");
    assert!(
        time(&same["fetched_at"]) > time(&first["fetched_at"]),
        "fetched_at is refreshed: {same}"
    );
    assert!(
        time(&same["expires_at"]) > time(&first["expires_at"]),
        "expires_at is refreshed"
    );
    assert_eq!(
        history_after_same["data"],
        json!([]),
        "an unchanged put adds no history: {history_after_same}"
    );

    assert_eq!(s3, 200, "{changed}");
    assert_eq!(
        (changed["changed"].as_bool(), changed["created"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["content_hash"], sha256(r#"{"a":2}"#));
    assert!(time(&changed["changed_at"]) > time(&first["changed_at"]));
    assert_eq!(changed["created_at"], first["created_at"]);
    assert_eq!(read2["data"], json!({"a": 2}));
    let rows = history1["data"].as_array().unwrap_or_else(|| panic!("{history1}"));
    assert_eq!(rows.len(), 1, "{history1}");
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["data"], data, "the history keeps the old data");
    assert_eq!(rows[0]["content_hash"], first["content_hash"]);
    assert_eq!(rows[0]["metadata"], json!({"source": "api"}));
    assert_eq!(
        time(&rows[0]["fetched_at"]),
        time(&same["fetched_at"]),
        "the replaced version as last fetched"
    );
    assert!(time(&rows[0]["replaced_at"]) >= time(&same["fetched_at"]));

    assert_eq!(s4, 200, "{third}");
    assert_eq!(third["version"], 3);
    let versions: Vec<_> = history2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1], "newest first: {history2}");
    assert_eq!(history2["data"][0]["data"], json!({"a": 2}));
    assert_eq!(entry_rows(&app).await, 1);
}

#[tokio::test]
async fn max_age_and_ttl_decide_freshness_and_allow_stale_returns_stale_entries() {
    let app = spawn_app().await;
    let (s1, long) = put(&app, "api/long", json!({"data": {"v": 1}})).await;
    let (s2, short) = put(&app, "api/short", json!({"data": {"v": 2}, "ttl_seconds": 1})).await;
    assert_eq!((s1, s2), (201, 201), "{long} {short}");
    assert_eq!(
        (time(&short["expires_at"]) - time(&short["fetched_at"])).num_seconds(),
        1,
        "{short}"
    );
    let (fresh_status, fresh) = get(&app, "api/long?max_age_seconds=1").await;
    assert_eq!(fresh_status, 200, "young enough: {fresh}");
    assert_eq!(fresh["stale"], false);

    tokio::time::sleep(Duration::from_millis(1500)).await;

    let too_old = app
        .with(Method::GET, "/v1/cache/api/long?max_age_seconds=1", &app.owner_key)
        .send()
        .await
        .unwrap();
    let (stale_status, stale) = get(&app, "api/long?max_age_seconds=1&allow_stale=true").await;
    let (young_status, young) = get(&app, "api/long?max_age_seconds=60").await;
    let (plain_status, plain) = get(&app, "api/long").await;
    let expired = app
        .with(Method::GET, "/v1/cache/api/short", &app.owner_key)
        .send()
        .await
        .unwrap();
    let (expired_stale_status, expired_stale) = get(&app, "api/short?allow_stale=true").await;
    let missing = app
        .with(Method::GET, "/v1/cache/api/nothing", &app.owner_key)
        .send()
        .await
        .unwrap();
    let missing_stale = app
        .with(Method::GET, "/v1/cache/api/nothing?allow_stale=true", &app.owner_key)
        .send()
        .await
        .unwrap();

    assert_error(too_old, 404, "not_found").await;
    assert_eq!(stale_status, 200, "{stale}");
    assert_eq!(stale["stale"], true);
    assert_eq!(stale["data"], json!({"v": 1}));
    assert!(stale["age_seconds"].as_f64().unwrap() >= 1.4, "{stale}");
    assert_eq!((young_status, &young["stale"]), (200, &json!(false)), "{young}");
    assert_eq!(
        (plain_status, &plain["stale"]),
        (200, &json!(false)),
        "no max age, not expired: {plain}"
    );
    assert_error(expired, 404, "not_found").await;
    assert_eq!(expired_stale_status, 200, "{expired_stale}");
    assert_eq!(expired_stale["stale"], true);
    assert_eq!(expired_stale["data"], json!({"v": 2}));
    assert_error(missing, 404, "not_found").await;
    assert_error(missing_stale, 404, "not_found").await;

    // A new put of the same data makes the expired entry fresh again, without a change.
    let (again_status, again) = put(&app, "api/short", json!({"data": {"v": 2}, "ttl_seconds": 60})).await;
    let (revived_status, revived) = get(&app, "api/short").await;
    assert_eq!(again_status, 200, "{again}");
    assert_eq!(again["changed"], false);
    assert_eq!((revived_status, &revived["stale"]), (200, &json!(false)), "{revived}");

    // TTL bounds.
    for ttl in [json!(0), json!(315_360_001), json!(-5)] {
        let res = app
            .with(Method::PUT, "/v1/cache/api/ttl", &app.owner_key)
            .json(&json!({"data": 1, "ttl_seconds": ttl}))
            .send()
            .await
            .unwrap();
        let (status, err) = json(res).await;
        assert_eq!(status, 400, "ttl {ttl}: {err}");
        assert!(
            ["validation_failed", "invalid_request"].contains(&err["code"].as_str().unwrap_or("")),
            "{err}"
        );
    }
    let (max_status, max) = put(&app, "api/ttl", json!({"data": 1, "ttl_seconds": 315_360_000})).await;
    assert_eq!(max_status, 201, "the largest TTL: {max}");
}

#[tokio::test]
async fn the_namespace_lists_by_change_time_since_a_time_and_in_pages() {
    let app = spawn_app().await;
    for key in ["k1", "k2", "k3"] {
        let (status, body) = put(&app, &format!("ns/{key}"), json!({"data": {"key": key}})).await;
        assert_eq!(status, 201, "{body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, other) = put(&app, "other/k9", json!({"data": 9})).await;
    assert_eq!(other["created"], true);
    let (_, unchanged) = put(&app, "ns/k2", json!({"data": {"key": "k2"}})).await; // refreshes, no change
    let (_, changed) = put(&app, "ns/k1", json!({"data": {"key": "k1", "v": 2}})).await;
    assert_eq!(
        (unchanged["changed"].as_bool(), changed["changed"].as_bool()),
        (Some(false), Some(true))
    );

    let (status, all) = get(&app, "ns").await;
    let (_, k2) = get(&app, "ns/k2").await;
    let (_, k3) = get(&app, "ns/k3").await;
    let cut = {
        let (a, b) = (time(&k2["changed_at"]), time(&k3["changed_at"]));
        crate::api::helpers::rfc3339(a + (b - a) / 2)
    };
    let (_, since) = get(&app, &format!("ns?changed_since={}", q(&cut))).await;
    let (_, since_now) = get(
        &app,
        &format!("ns?changed_since={}", q(changed["changed_at"].as_str().unwrap())),
    )
    .await;

    let mut paged = vec![];
    let mut cursor: Option<String> = None;
    for page_no in 0.. {
        assert!(page_no < 10, "paging does not end");
        let path = match &cursor {
            Some(c) => format!("ns?limit=2&cursor={}", q(c)),
            None => "ns?limit=2".to_string(),
        };
        let (page_status, page) = get(&app, &path).await;
        assert_eq!(page_status, 200, "{page}");
        assert!(page["data"].as_array().unwrap().len() <= 2);
        paged.extend(keys(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let (_, since_paged) = get(&app, &format!("ns?changed_since={}&limit=1", q(&cut))).await;
    let next = since_paged["next_cursor"].as_str().expect("a second page").to_string();
    let (_, since_rest) = get(
        &app,
        &format!("ns?changed_since={}&limit=1&cursor={}", q(&cut), q(&next)),
    )
    .await;
    let (_, empty) = get(&app, "nobody").await;
    let bad_limit = app
        .with(Method::GET, "/v1/cache/ns?limit=0", &app.owner_key)
        .send()
        .await
        .unwrap();

    assert_eq!(status, 200, "{all}");
    assert_eq!(
        keys(&all),
        ["k2", "k3", "k1"],
        "changed_at ascending; an unchanged put does not move an entry: {all}"
    );
    assert_eq!(all["next_cursor"], Value::Null);
    let entry = &all["data"][2];
    assert_eq!(entry["namespace"], "ns");
    assert_eq!(entry["data"], json!({"key": "k1", "v": 2}));
    assert_eq!(entry["version"], 2);
    assert_eq!(keys(&since), ["k3", "k1"], "{since}");
    assert_eq!(keys(&since_now), ["k1"], "{since_now}");
    assert_eq!(paged, ["k2", "k3", "k1"]);
    assert_eq!(keys(&since_paged), ["k3"]);
    assert_eq!(keys(&since_rest), ["k1"], "the cursor keeps changed_since");
    assert_eq!(since_rest["next_cursor"], Value::Null);
    assert!(empty["data"].as_array().unwrap().is_empty(), "{empty}");
    assert_error(bad_limit, 400, "validation_failed").await;
}

#[tokio::test]
async fn delete_removes_a_key_with_its_history_or_a_whole_namespace() {
    let app = spawn_app().await;
    for (path, data) in [("ns/a", 1), ("ns/a", 2), ("ns/b", 1), ("ns/c", 1), ("keep/a", 1)] {
        let (status, body) = put(&app, path, json!({"data": data})).await;
        assert!(status == 200 || status == 201, "{body}");
    }
    assert_eq!(history_rows(&app, "ns", "a").await, 1);

    let (del_status, _) = call(&app, Method::DELETE, "/v1/cache/ns/a", None).await;
    let gone = app
        .with(Method::GET, "/v1/cache/ns/a?allow_stale=true", &app.owner_key)
        .send()
        .await
        .unwrap();
    let again = app
        .with(Method::DELETE, "/v1/cache/ns/a", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    assert_error(again, 404, "not_found").await;
    assert_eq!(history_rows(&app, "ns", "a").await, 0, "the key's history goes with it");
    let (recreated_status, recreated) = put(&app, "ns/a", json!({"data": 3})).await;
    assert_eq!(recreated_status, 201, "{recreated}");
    assert_eq!(
        (recreated["version"].as_i64(), recreated["created"].as_bool()),
        (Some(1), Some(true)),
        "a new entry: {recreated}"
    );

    let (ns_status, deleted) = call(&app, Method::DELETE, "/v1/cache/ns", None).await;
    let (_, listed) = get(&app, "ns").await;
    let (_, deleted_again) = call(&app, Method::DELETE, "/v1/cache/ns", None).await;
    let (kept_status, kept) = get(&app, "keep/a").await;

    assert_eq!(ns_status, 200, "{deleted}");
    assert_eq!(deleted, json!({"deleted": 3}));
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");
    assert_eq!(deleted_again, json!({"deleted": 0}));
    assert_eq!(kept_status, 200, "another namespace is untouched: {kept}");
    assert_eq!(entry_rows(&app).await, 1);
}

#[tokio::test]
async fn bad_names_and_bodies_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let body = json!({"data": {"x": 1}});
    let long_key = "k".repeat(191);
    let long_ns = "n".repeat(65);
    for path in [
        "tools/bad%20key%21".to_string(),
        format!("tools/{long_key}"),
        format!("{long_ns}/key"),
        "bad:ns/key".to_string(),
        "bad%20ns/key".to_string(),
        "tools/semi;colon".to_string(),
        "tools/%C3%A9t%C3%A9".to_string(),
    ] {
        let put_res = app
            .with(Method::PUT, &format!("/v1/cache/{path}"), &app.owner_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(put_res, 400, "validation_failed").await;
        // A name no store can make names no entry: reads find nothing.
        let get_res = app
            .with(Method::GET, &format!("/v1/cache/{path}"), &app.owner_key)
            .send()
            .await
            .unwrap();
        assert_error(get_res, 404, "not_found").await;
    }
    let list_res = app
        .with(Method::GET, &format!("/v1/cache/{long_ns}"), &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_error(list_res, 404, "not_found").await;
    let malformed = app
        .with(Method::PUT, "/v1/cache/tools/ok", &app.owner_key)
        .header("content-type", "application/json")
        .body("{\"data\": {\"x\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "invalid_json").await;
    let bad_index = app
        .with(Method::PUT, "/v1/cache/tools/ok", &app.owner_key)
        .json(&json!({"data": {"x": 1}, "index": {"collection": "does-not-exist"}}))
        .send()
        .await
        .unwrap();
    assert!(
        bad_index.status().is_client_error(),
        "an index into a missing collection: {}",
        bad_index.status()
    );
    assert_eq!(entry_rows(&app).await, 0, "nothing was written");

    // The limits themselves are allowed, as is every allowed character.
    let ok_key = "k".repeat(190);
    let ok_ns = "n".repeat(64);
    let (s1, b1) = put(&app, &format!("tools/{ok_key}"), body.clone()).await;
    let (s2, b2) = put(&app, &format!("{ok_ns}/key"), body.clone()).await;
    let (s3, b3) = put(&app, "My_ns.v-2/aZ09_.:@=+~-", body.clone()).await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(s2, 201, "{b2}");
    assert_eq!(s3, 201, "{b3}");
    assert_eq!(b3["key"], "aZ09_.:@=+~-");
    assert_eq!(b3["namespace"], "My_ns.v-2");
    let (read_status, _) = get(&app, "My_ns.v-2/aZ09_.:@=+~-").await;
    assert_eq!(read_status, 200);
    assert_eq!(entry_rows(&app).await, 3);
}
