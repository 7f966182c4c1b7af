//! The OpenAPI document covers every registered route, and the docs UI is served offline.

use crate::api::helpers::{json, spawn_app};

#[tokio::test]
async fn every_registered_route_is_in_the_openapi_spec_with_an_example() {
    let app = spawn_app().await;

    let (status, spec) = json(app.get("/openapi.json").await).await;

    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    let mut missing = vec![];
    for route in onebase::api::all() {
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

#[tokio::test]
async fn the_spec_states_the_errors_and_bounds_the_handlers_enforce() {
    let app = spawn_app().await;

    let (_, spec) = json(app.get("/openapi.json").await).await;

    let mut gaps = vec![];
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let documented = |status: &str| op["responses"].get(status).is_some();
            let label = format!("{} {path}", method.to_uppercase());
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    if !documented(status) {
                        gaps.push(format!("{label}: body errors ({status})"));
                    }
                }
            }
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured && !(documented("401") && documented("503")) {
                gaps.push(format!("{label}: 401/503"));
            }
            let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            if has_params && !documented("400") {
                gaps.push(format!("{label}: 400 for a bad parameter"));
            }
        }
    }
    assert!(gaps.is_empty(), "undocumented statuses: {gaps:?}");
    let limit = spec["paths"]["/v1/tenants"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit parameter")
        .clone();
    assert_eq!(
        (limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()),
        (Some(1), Some(500))
    );
    let name = &spec["components"]["schemas"]["CreateTenant"]["properties"]["name"];
    assert_eq!(
        (name["minLength"].as_u64(), name["maxLength"].as_u64()),
        (Some(1), Some(200))
    );
    let input = &spec["components"]["schemas"]["EmbeddingInput"]["oneOf"][1];
    assert_eq!(
        input["maxItems"].as_u64(),
        Some(256),
        "the configured --embed-max-inputs: {input}"
    );
}

#[tokio::test]
async fn links_name_operations_that_exist() {
    let app = spawn_app().await;

    let (_, spec) = json(app.get("/openapi.json").await).await;

    let operation_ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let links: Vec<&serde_json::Value> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .flat_map(|op| op["responses"].as_object().unwrap().values())
        .filter_map(|r| r["links"].as_object())
        .flat_map(|links| links.values())
        .collect();
    assert!(links.len() >= 8, "create -> read -> delete chains are linked");
    for link in links {
        let target = link["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("no operationId: {link}"));
        assert!(operation_ids.contains(&target), "link to unknown operation {target}");
    }
}

#[tokio::test]
async fn every_schema_reference_resolves_and_caller_ids_share_one_rule() {
    let app = spawn_app().await;

    let (_, spec) = json(app.get("/openapi.json").await).await;

    fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = vec![];
    refs(&spec, &mut found);
    let schemas = &spec["components"]["schemas"];
    let mut unresolved: Vec<&str> = found
        .iter()
        .copied()
        .filter(|r| {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a schema ref: {r}"));
            !schemas[name].is_object()
        })
        .collect();
    unresolved.sort_unstable();
    unresolved.dedup();
    assert!(unresolved.is_empty(), "references to no schema: {unresolved:?}");
    // The ids callers choose are one schema each, their pattern built from one rule.
    for (name, max) in [
        ("UserId", 256),
        ("AgentName", 256),
        ("ConversationId", 128),
        ("CacheKey", 190),
    ] {
        assert_eq!(
            schemas[name]["pattern"],
            format!("^[A-Za-z0-9_.:@=+~-]{{1,{max}}}$"),
            "{name}"
        );
        assert!(
            found.contains(&format!("#/components/schemas/{name}").as_str()),
            "{name} is used"
        );
    }
}
