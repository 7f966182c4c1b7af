//! Error responses: always JSON, with a stable code, a message and the request id.

use crate::api::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;

    let res = app.get("/v1/no-such-thing").await;

    let body = assert_error(res, 404, "route_not_found").await;
    assert!(body["message"].as_str().unwrap().contains("/v1/no-such-thing"));
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let app = spawn_app().await;

    let res = app.client.delete(app.url("/health")).send().await.unwrap();

    assert_error(res, 405, "method_not_allowed").await;
}

use crate::api::helpers::ADMIN_KEY;
use reqwest::Method;

#[tokio::test]
async fn malformed_json_is_a_400_and_writes_nothing() {
    let app = spawn_app().await;

    let res = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();

    assert_error(res, 400, "invalid_json").await;
    assert_eq!(tenant_count(&app).await, 1, "only the default tenant");
}

#[tokio::test]
async fn a_wrong_shape_or_unknown_field_is_a_400() {
    let app = spawn_app().await;

    let wrong_type = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": 5}))
        .send()
        .await
        .unwrap();
    let unknown = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "x", "nmae": 1}))
        .send()
        .await
        .unwrap();
    let empty_name = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "  "}))
        .send()
        .await
        .unwrap();

    assert_error(wrong_type, 400, "invalid_request").await;
    assert_error(unknown, 400, "invalid_request").await;
    assert_error(empty_name, 400, "validation_failed").await;
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app().await; // body limit 64 KiB in tests

    let res = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "big", "settings": {"blob": "x".repeat(100 * 1024)}}))
        .send()
        .await
        .unwrap();

    let body = assert_error(res, 413, "payload_too_large").await;
    assert!(body["message"].as_str().unwrap().contains("65536"), "{body}");
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn a_non_json_content_type_is_a_415() {
    let app = spawn_app().await;

    let res = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .header("content-type", "text/plain")
        .body("{\"name\": \"x\"}")
        .send()
        .await
        .unwrap();

    assert_error(res, 415, "unsupported_media_type").await;
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn a_bad_path_parameter_is_a_400() {
    let app = spawn_app().await;

    let res = app
        .with(Method::GET, "/v1/tenants/not-a-uuid", ADMIN_KEY)
        .send()
        .await
        .unwrap();

    assert_error(res, 400, "invalid_request").await;
}

async fn tenant_count(app: &crate::api::helpers::TestApp) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0)
}
