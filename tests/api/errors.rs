//! Error responses: always JSON, with a stable code, a message and the request id.

use crate::api::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;

    let res = app.get("/v1/no-such-thing").await;

    let body = assert_error(res, 404, "route_not_found").await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("/v1/no-such-thing"));
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let app = spawn_app().await;

    let res = app.client.delete(app.url("/health")).send().await.unwrap();

    assert_error(res, 405, "method_not_allowed").await;
}
