//! Error responses: always JSON, with a stable code, a message and the request id.

use crate::api::helpers::{assert_error, spawn_app, ADMIN_KEY};

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
    let trace = app
        .client
        .request(Method::TRACE, app.url("/v1/tenants"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        res.headers()["allow"],
        "GET",
        "RFC 9110: a 405 names the allowed methods"
    );
    assert_error(res, 405, "method_not_allowed").await;
    assert_eq!(trace.headers()["allow"], "GET, POST");
    assert_error(trace, 405, "method_not_allowed").await;
}

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

#[tokio::test]
async fn a_json_array_is_not_an_object_body() {
    let app = spawn_app().await;

    // serde would map an array onto a struct's fields in order; the schema says object.
    let res = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!(["array-tenant", null]))
        .send()
        .await
        .unwrap();

    let body = assert_error(res, 400, "invalid_request").await;
    assert!(body["message"].as_str().unwrap().contains("JSON object"), "{body}");
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn text_with_a_nul_character_is_a_400_not_a_500() {
    let app = spawn_app().await;

    let in_name = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "nul\u{0}name"}))
        .send()
        .await
        .unwrap();
    let in_settings = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "ok", "settings": {"k\u{0}": "v\u{0}"}}))
        .send()
        .await
        .unwrap();
    let in_query = app
        .with(Method::GET, "/v1/audit?resource_type=%00", &app.owner_key)
        .send()
        .await
        .unwrap();

    let body = assert_error(in_name, 400, "invalid_request").await;
    assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    assert_error(in_settings, 400, "invalid_request").await;
    assert_error(in_query, 400, "invalid_request").await;
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn nul_is_refused_in_every_body_path_and_query_not_only_where_it_would_be_stored() {
    let app = spawn_app().await;
    let conversation = app
        .with(Method::POST, "/v1/conversations", &app.owner_key)
        .json(&serde_json::json!({"id": "sess-nul", "user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(conversation.status(), 201);

    // Fields that are embedded or compared, never stored, took U+0000 before: now every field
    // refuses it, whichever endpoint, before the handler runs.
    let refused = [
        (
            Method::POST,
            "/v1/embeddings",
            serde_json::json!({"input": "hi", "user": "a\u{0}b"}),
        ),
        (
            Method::POST,
            "/v1/search",
            serde_json::json!({"collections": ["none"], "query": "q\u{0}"}),
        ),
        (
            Method::PUT,
            "/v1/conversations/sess-nul/workflow",
            serde_json::json!({"workflow_type": "refund", "current_step": "s\u{0}", "state": {"step": 1}}),
        ),
        (
            Method::POST,
            "/v1/memories/search",
            serde_json::json!({"query": "x", "user_id": "u1", "filter": {"k": "v\u{0}"}}),
        ),
    ];
    for (method, path, body) in refused {
        let res = app.with(method, path, &app.owner_key).json(&body).send().await.unwrap();
        let error = assert_error(res, 400, "invalid_request").await;
        assert!(error["message"].as_str().unwrap().contains("NUL"), "{path}: {error}");
    }
    for path in ["/v1/collections/a%00b", "/v1/conversations?user_id=u%001"] {
        let res = app.with(Method::GET, path, &app.owner_key).send().await.unwrap();
        assert_error(res, 400, "invalid_request").await;
    }
    // A backslash followed by the text `u0000` is not the character.
    let literal = app
        .with(Method::PATCH, "/v1/conversations/sess-nul", &app.owner_key)
        .json(&serde_json::json!({"title": "C:\\u0000 is text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(literal.status(), 200);

    let workflow = app
        .with(Method::GET, "/v1/conversations/sess-nul/workflow", &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(workflow.status(), 404, "the refused workflow was not saved");
}

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = spawn_app().await;

    // JSON Schema's `integer` includes 5.0; numbers with a fraction are not integers.
    let whole = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "whole", "max_documents": 5.0}))
        .send()
        .await
        .unwrap();
    let fraction = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "fraction", "max_documents": 5.5}))
        .send()
        .await
        .unwrap();

    let (status, tenant) = crate::api::helpers::json(whole).await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["max_documents"], 5);
    assert_error(fraction, 400, "invalid_request").await;
    assert_eq!(tenant_count(&app).await, 2);
}

#[tokio::test]
async fn any_json_number_in_settings_reads_back() {
    let app = spawn_app().await;
    // PostgreSQL prints jsonb numbers in full decimal (309 digits for this one).
    let settings = serde_json::json!({"huge": -1.7976931348623157e308, "tiny": 7.720042055096743e-134});

    let created = app
        .with(Method::POST, "/v1/tenants", ADMIN_KEY)
        .json(&serde_json::json!({"name": "numbers", "settings": settings}))
        .send()
        .await
        .unwrap();

    let (status, tenant) = crate::api::helpers::json(created).await;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["settings"], settings);
}
