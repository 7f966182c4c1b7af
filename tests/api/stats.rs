//! `GET /v1/stats` (a tenant's storage, confined to it), `GET /v1/admin/stats` (the database)
//! and the database gauges of `/metrics`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{
    append, assert_error, call, call_as, collection, conversation, json, spawn_app_with, ADMIN_KEY,
};

#[tokio::test]
async fn stats_count_the_tenants_own_rows_and_the_admin_sees_the_database() {
    let app = spawn_app_with(|c| c.stats_interval_secs = 0.2).await;
    collection(&app, json!({"name": "kb"})).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/documents",
        Some(json!({"documents": [
        {"id": "a", "text": "The boiler needs a new valve."}, {"id": "b", "text": "Parking is on level -2."}]})),
    )
    .await;
    assert_eq!(status, 201);
    let conv = conversation(&app, json!({"user_id": "u1"})).await;
    append(
        &app,
        conv["id"].as_str().unwrap(),
        json!({"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    )
    .await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(json!({"actor": "a", "request_payload": {}, "status": "queued"})),
    )
    .await;
    assert_eq!(status, 201);
    // Another tenant's rows are not counted.
    let other = app.create_tenant("other").await;
    let (_, other_key) = app.create_key(other, "owner").await;
    for _ in 0..3 {
        let (status, _) = call_as(
            &app,
            &other_key,
            Method::POST,
            "/v1/runs",
            Some(json!({"actor": "b", "request_payload": {}, "status": "queued"})),
        )
        .await;
        assert_eq!(status, 201);
    }

    let (status, stats) = call(&app, Method::GET, "/v1/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    let kb = &stats["collections"][0];
    assert_eq!(
        (kb["name"].as_str(), kb["documents"].as_i64(), kb["chunks"].as_i64()),
        (Some("kb"), Some(2), Some(2)),
        "{stats}"
    );
    assert!(
        kb["table_bytes"].as_i64().unwrap() > 0 && kb["index_bytes"].as_i64().unwrap() > 0,
        "{stats}"
    );
    let rows = |table: &str| stats["tables"][table]["rows"].as_i64().unwrap_or(-1);
    assert_eq!(
        (rows("runs"), rows("conversations"), rows("messages"), rows("memories")),
        (1, 1, 2, 0),
        "{stats}"
    );
    assert!(stats["tables"]["runs"]["bytes"].as_i64().unwrap() > 0, "{stats}");
    assert!(
        stats["total_bytes"].as_i64().unwrap() >= kb["table_bytes"].as_i64().unwrap(),
        "{stats}"
    );
    let (_, theirs) = call_as(&app, &other_key, Method::GET, "/v1/stats", None).await;
    assert_eq!(theirs["tables"]["runs"]["rows"], 3, "{theirs}");
    assert_eq!(theirs["collections"], json!([]), "{theirs}");

    // The database, for the admin only.
    assert_error(
        app.with(Method::GET, "/v1/admin/stats", &app.owner_key)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let (status, db) = json(
        app.with(Method::GET, "/v1/admin/stats", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{db}");
    assert_eq!(db["database"], app.db_name.as_str());
    assert!(db["database_bytes"].as_i64().unwrap() > 1_000_000, "{db}");
    assert_eq!(db["tenants"], 2);
    let tables = db["tables"].as_array().unwrap();
    assert!(tables.iter().any(|t| t["name"] == "public.runs"), "{db}");
    assert!(
        db["connections"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_i64().unwrap())
            .sum::<i64>()
            >= 1,
        "{db}"
    );
    assert_eq!(db["replicas"], json!([]));
    // The admin key has no tenant of its own.
    let (status, _) = json(app.with(Method::GET, "/v1/stats", ADMIN_KEY).send().await.unwrap()).await;
    assert_eq!(status, 403);

    // /metrics carries the same figures, refreshed in the background.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let runs_bytes = metrics
            .lines()
            .find(|l| l.starts_with("onebase_db_table_bytes{table=\"runs\"}"));
        let size = metrics
            .lines()
            .find(|l| l.starts_with("onebase_db_size_bytes "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if runs_bytes.is_some() && size.is_some_and(|s| s > 1e6) && metrics.contains("onebase_tenants 2") {
            break;
        }
        assert!(Instant::now() < deadline, "no database gauges in /metrics: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each request's time holding database connections is a histogram per route in `/metrics`.
#[tokio::test]
async fn database_time_per_route_is_a_histogram() {
    let app = spawn_app_with(|c| c.slow_request_ms = 0.0).await; // every request logs as slow
    let (status, _) = crate::api::helpers::call(
        &app,
        Method::POST,
        "/v1/runs",
        Some(serde_json::json!({"actor": "a", "request_payload": {}, "status": "queued"})),
    )
    .await;
    assert_eq!(status, 201);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        let prefix = format!("onebase_request_db_seconds_{name}{{method=\"POST\",route=\"/v1/runs\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("count"), 1.0);
    assert!(
        value("sum") > 0.0 && value("sum") < 10.0,
        "a run's insert took some database time"
    );
}
