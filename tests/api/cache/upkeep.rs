//! The cache's sweep, its indexed documents, and tenant isolation.

use super::*;

#[tokio::test]
async fn the_sweep_removes_expired_entries_and_old_history_only() {
    let app = spawn_app_with(|c| {
        c.sweep_interval_secs = 1.0;
        c.cache_keep_expired_secs = 0;
    })
    .await;
    let (s1, _) = put(&app, "s/short", json!({"data": "soon gone", "ttl_seconds": 1})).await;
    let (s2, _) = put(&app, "s/fresh", json!({"data": "v1"})).await;
    put(&app, "s/fresh", json!({"data": "v2"})).await;
    let (_, current) = put(&app, "s/fresh", json!({"data": "v3"})).await;
    assert_eq!((s1, s2, current["version"].as_i64()), (201, 201, Some(3)), "{current}");
    {
        let client = app.pool.get().await.unwrap();
        let backdated = client
            .execute(
                "UPDATE cache_history SET replaced_at = now() - interval '100 days' WHERE namespace = 's' AND key = 'fresh' AND version = 1",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(backdated, 1);
    }

    let start = Instant::now();
    loop {
        let (short_status, _) = get(&app, "s/short?allow_stale=true").await;
        let old_history = {
            let client = app.pool.get().await.unwrap();
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM cache_history WHERE namespace = 's' AND key = 'fresh' AND version = 1",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n
        };
        if short_status == 404 && old_history == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the sweep did not remove the expired entry ({short_status}) or the old history ({old_history})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let (fresh_status, fresh) = get(&app, "s/fresh").await;
    let (_, history) = get(&app, "s/fresh/history").await;
    assert_eq!(fresh_status, 200, "the fresh entry stays: {fresh}");
    assert_eq!(fresh["data"], "v3");
    let versions: Vec<_> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [2],
        "the recent history row stays, the old one is gone: {history}"
    );
    assert_eq!(entry_rows(&app).await, 1);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let swept = |rule: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with("onebase_retention_deleted_total") && l.contains(&format!("rule=\"{rule}\"")))
            .unwrap_or_else(|| panic!("no onebase_retention_deleted_total{{rule=\"{rule}\"}} in {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(swept("cache_expired") >= 1.0, "{metrics}");
    assert!(swept("cache_history") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn an_indexed_entry_keeps_one_document_with_the_latest_text() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "rulings"})).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/rulings/documents",
        Some(json!({"documents": [
            {"id": "f1", "text": "The cafeteria serves lunch from noon until two in the afternoon."},
            {"id": "f2", "text": "Lock your laptop screen whenever you step away from your desk."},
            {"id": "f3", "text": "Staff may park their cars in the underground garage."},
        ]})),
    )
    .await;
    assert_eq!(status, 201);
    let first_summary = "A tenant may withhold rent when the landlord fails to repair the heating.";
    let latest_summary = "Employers must pay overtime for every hour worked beyond forty in a week.";
    let index = json!({"collection": "rulings", "text_field": "summary"});

    let (s1, v1) = put(
        &app,
        "court/case-17",
        json!({"data": {"summary": first_summary, "n": 1}, "metadata": {"court": "high"}, "index": index}),
    )
    .await;
    let (s2, v2) = put(
        &app,
        "court/case-17",
        json!({"data": {"summary": latest_summary, "n": 2}, "metadata": {"court": "high"}, "index": index}),
    )
    .await;
    let (s3, v3) = put(
        &app,
        "court/case-17",
        json!({"data": {"n": 2, "summary": latest_summary}, "metadata": {"court": "high"}, "index": index}),
    )
    .await;
    let (_, docs) = call(&app, Method::GET, "/v1/collections/rulings/documents?limit=100", None).await;
    let (_, doc) = call(
        &app,
        Method::GET,
        "/v1/collections/rulings/documents/court:case-17",
        None,
    )
    .await;
    let (search_status, found) = call(
        &app,
        Method::POST,
        "/v1/collections/rulings/search",
        Some(json!({"query": "overtime pay for extra working hours", "k": 5})),
    )
    .await;
    let (_, old_text) = call(
        &app,
        Method::POST,
        "/v1/collections/rulings/search",
        Some(json!({"query": "heating repair rent", "k": 5, "mode": "text"})),
    )
    .await;

    assert_eq!((s1, s2, s3), (201, 200, 200), "{v1} {v2} {v3}");
    assert_eq!(v1["indexed_in"], "rulings");
    assert_eq!((v2["changed"].as_bool(), v2["version"].as_i64()), (Some(true), Some(2)));
    assert_eq!(
        (v3["changed"].as_bool(), v3["version"].as_i64()),
        (Some(false), Some(2)),
        "the same data: {v3}"
    );
    assert_eq!(v3["indexed_in"], "rulings");
    let cached: Vec<_> = docs["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{docs}"))
        .iter()
        .filter(|d| !["f1", "f2", "f3"].contains(&d["id"].as_str().unwrap()))
        .collect();
    assert_eq!(cached.len(), 1, "exactly one document for the key: {docs}");
    assert_eq!(cached[0]["id"], "court:case-17");
    assert_eq!(cached[0]["text"], latest_summary, "the latest summary");
    assert_eq!(doc["text"], latest_summary, "{doc}");
    assert_eq!(
        doc["metadata"],
        json!({"court": "high", "source": "cache", "namespace": "court", "key": "case-17"})
    );
    assert_eq!(search_status, 200, "{found}");
    assert_eq!(found["hits"][0]["document_id"], "court:case-17", "{found}");
    assert!(
        old_text["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["document_id"] != "court:case-17"),
        "the old text is gone: {old_text}"
    );

    // A JSON pointer picks the text; the whole data is the default text.
    let (_, pointed) = put(
        &app,
        "court/case-18",
        json!({"data": {"doc": {"abstract": "Noise complaints after ten at night."}},
        "index": {"collection": "rulings", "text_field": "/doc/abstract"}}),
    )
    .await;
    let (_, whole) = put(
        &app,
        "court/case-19",
        json!({"data": {"verdict": "dismissed"}, "index": {"collection": "rulings"}}),
    )
    .await;
    let (_, pointed_doc) = call(
        &app,
        Method::GET,
        "/v1/collections/rulings/documents/court:case-18",
        None,
    )
    .await;
    let (_, whole_doc) = call(
        &app,
        Method::GET,
        "/v1/collections/rulings/documents/court:case-19",
        None,
    )
    .await;
    assert_eq!(pointed["indexed_in"], "rulings", "{pointed}");
    assert_eq!(whole["indexed_in"], "rulings", "{whole}");
    assert_eq!(
        pointed_doc["text"], "Noise complaints after ten at night.",
        "{pointed_doc}"
    );
    let whole_text = whole_doc["text"].as_str().unwrap_or_else(|| panic!("{whole_doc}"));
    assert_eq!(
        serde_json::from_str::<Value>(whole_text).unwrap(),
        json!({"verdict": "dismissed"}),
        "the data as JSON text"
    );

    // Deleting the key removes its document; deleting the namespace removes the rest.
    let (del_status, _) = call(&app, Method::DELETE, "/v1/cache/court/case-17", None).await;
    let gone = app
        .with(
            Method::GET,
            "/v1/collections/rulings/documents/court:case-17",
            &app.owner_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(del_status, 204);
    assert_error(gone, 404, "not_found").await;
    let (_, deleted) = call(&app, Method::DELETE, "/v1/cache/court", None).await;
    assert_eq!(deleted, json!({"deleted": 2}));
    let (_, left) = call(&app, Method::GET, "/v1/collections/rulings/documents?limit=100", None).await;
    let mut left: Vec<_> = left["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["f1", "f2", "f3"], "only the collection's own documents remain");
}

#[tokio::test]
async fn tenant_b_cannot_read_list_or_delete_tenant_a_cache() {
    let app = spawn_app().await;
    put(&app, "shared/k", json!({"data": {"owner": "a"}})).await;
    let (_, a_entry) = put(&app, "shared/k", json!({"data": {"owner": "a", "v": 2}})).await;
    assert_eq!(a_entry["version"], 2);
    let b = app.create_tenant("b").await;
    let (_, b_key) = app.create_key(b, "owner").await;

    for (method, path) in [
        (Method::GET, "/v1/cache/shared/k"),
        (Method::GET, "/v1/cache/shared/k?allow_stale=true"),
        (Method::GET, "/v1/cache/shared/k/history"),
        (Method::DELETE, "/v1/cache/shared/k"),
    ] {
        let res = app.with(method.clone(), path, &b_key).send().await.unwrap();
        let (status, err) = json(res).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    let (_, b_list) = call_as(&app, &b_key, Method::GET, "/v1/cache/shared", None).await;
    let (_, b_deleted) = call_as(&app, &b_key, Method::DELETE, "/v1/cache/shared", None).await;
    assert!(b_list["data"].as_array().unwrap().is_empty(), "{b_list}");
    assert_eq!(b_deleted, json!({"deleted": 0}));

    // B's own entry under the same name is B's alone.
    let (b_status, b_entry) = call_as(
        &app,
        &b_key,
        Method::PUT,
        "/v1/cache/shared/k",
        Some(json!({"data": {"owner": "b"}})),
    )
    .await;
    assert_eq!(b_status, 201, "{b_entry}");
    assert_eq!(
        (b_entry["version"].as_i64(), b_entry["created"].as_bool()),
        (Some(1), Some(true))
    );
    let (_, a_read) = get(&app, "shared/k").await;
    let (_, a_history) = get(&app, "shared/k/history").await;
    let (_, b_read) = call_as(&app, &b_key, Method::GET, "/v1/cache/shared/k", None).await;
    let (_, b_history) = call_as(&app, &b_key, Method::GET, "/v1/cache/shared/k/history", None).await;
    assert_eq!(a_read["data"], json!({"owner": "a", "v": 2}));
    assert_eq!(a_read["version"], 2);
    assert_eq!(a_history["data"].as_array().unwrap().len(), 1);
    assert_eq!(b_read["data"], json!({"owner": "b"}));
    assert!(b_history["data"].as_array().unwrap().is_empty(), "{b_history}");
    let (_, b_deleted) = call_as(&app, &b_key, Method::DELETE, "/v1/cache/shared", None).await;
    assert_eq!(b_deleted, json!({"deleted": 1}));
    let (a_status, _) = get(&app, "shared/k").await;
    assert_eq!(a_status, 200, "A's entry survives B's namespace delete");

    // Roles: readers read, writers write; the admin key is not a tenant credential.
    let (_, reader) = app.create_key(app.default_tenant, "reader").await;
    let (read_status, _) = call_as(&app, &reader, Method::GET, "/v1/cache/shared/k", None).await;
    let as_reader = app
        .with(Method::PUT, "/v1/cache/shared/k", &reader)
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    let reader_delete = app
        .with(Method::DELETE, "/v1/cache/shared", &reader)
        .send()
        .await
        .unwrap();
    let as_admin = app
        .with(Method::GET, "/v1/cache/shared/k", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(read_status, 200);
    assert_error(as_reader, 403, "forbidden").await;
    assert_error(reader_delete, 403, "forbidden").await;
    assert_error(as_admin, 403, "forbidden").await;
    let (_, still) = get(&app, "shared/k").await;
    assert_eq!(
        still["data"],
        json!({"owner": "a", "v": 2}),
        "the refused writes changed nothing"
    );
}
