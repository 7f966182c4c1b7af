//! The OpenAPI document covers every registered route, and the docs UI is served offline.

use crate::api::helpers::{json, spawn_app};

#[tokio::test]
async fn every_registered_route_is_in_the_openapi_spec_with_an_example() {
    let app = spawn_app().await;

    let (status, spec) = json(app.get("/openapi.json").await).await;

    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    let mut missing = vec![];
    for route in onebase::routes::all() {
        let Some(op) = paths.get(route.path).and_then(|p| p.get(route.method)) else {
            missing.push(format!("{} {}", route.method.to_uppercase(), route.path));
            continue;
        };
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            !responses.is_empty(),
            "{} {} documents no responses",
            route.method,
            route.path
        );
    }
    assert!(missing.is_empty(), "routes missing from /openapi.json: {missing:?}");
    assert!(
        spec["components"]["schemas"]["ErrorBody"].is_object(),
        "error schema documented"
    );
}

#[tokio::test]
async fn docs_ui_is_served_by_the_binary() {
    let app = spawn_app().await;

    let redirect = app.get("/docs").await;
    let page = app.get("/docs/").await;

    assert_eq!(redirect.status().as_u16(), 308);
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "swagger UI page: {html}");
    // Its assets come from the binary too, not a CDN.
    let js = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(js.status().as_u16(), 200);
    assert!(!html.contains("https://"), "no external asset URLs in the docs page");
}
