//! Documents: written with their chunks and vectors in one transaction, read, listed, deleted.

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{assert_error, call, chunk_rows, collection, spawn_app, ADMIN_KEY};

const POLICY: &str = "Employees accrue two days of paid leave per month. Unused days carry over to the next year. \
    Requests go to your manager at least a week ahead.";

#[tokio::test]
async fn write_read_chunks_upsert_and_delete() {
    let app = spawn_app().await;
    collection(
        &app,
        json!({"name": "hr", "chunking": {"max_tokens": 16, "overlap_tokens": 4}}),
    )
    .await;

    let (status, written) = call(
        &app,
        Method::POST,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
            {"id": "leave", "text": POLICY, "metadata": {"team": "people"}},
            {"text": "The cafeteria opens at eight.", "metadata": {"team": "facilities"}}
        ]})),
    )
    .await;
    let (_, doc) = call(&app, Method::GET, "/v1/collections/hr/documents/leave", None).await;
    let (_, chunks) = call(&app, Method::GET, "/v1/collections/hr/documents/leave/chunks", None).await;
    let (dup_status, dup) = call(
        &app,
        Method::POST,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
        {"id": "leave", "text": "again"}]})),
    )
    .await;
    let (_, again) = call(
        &app,
        Method::PUT,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
        {"id": "leave", "text": POLICY, "metadata": {"team": "people"}}]})),
    )
    .await;
    let (_, relabeled) = call(
        &app,
        Method::PUT,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
        {"id": "leave", "text": POLICY, "metadata": {"team": "hr"}}]})),
    )
    .await;
    let (_, rewritten) = call(
        &app,
        Method::PUT,
        "/v1/collections/hr/documents",
        Some(json!({"documents": [
        {"id": "leave", "text": "Leave is unlimited.", "metadata": {"team": "hr"}}, {"id": "new", "text": "Hello."}]})),
    )
    .await;
    let (_, coll) = call(&app, Method::GET, "/v1/collections/hr", None).await;
    let (del_status, _) = call(&app, Method::DELETE, "/v1/collections/hr/documents/leave", None).await;
    let (gone_status, _) = call(&app, Method::GET, "/v1/collections/hr/documents/leave", None).await;

    assert_eq!(status, 201, "{written}");
    assert_eq!(written["documents"][0]["status"], "created");
    let generated = written["documents"][1]["id"].as_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUIDv7 id: {generated}");
    assert_eq!(doc["text"], POLICY);
    let pieces = chunks["data"].as_array().unwrap();
    assert!(pieces.len() >= 2, "16-token chunks: {chunks}");
    let chars: Vec<char> = POLICY.chars().collect();
    for c in pieces {
        let (s, e) = (
            c["start_char"].as_u64().unwrap() as usize,
            c["end_char"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            chars[s..e].iter().collect::<String>(),
            c["text"].as_str().unwrap(),
            "offsets locate the chunk"
        );
    }
    assert_eq!(dup_status, 409, "{dup}");
    assert!(
        dup["message"].as_str().unwrap().contains("leave"),
        "names the id: {dup}"
    );
    assert_eq!(
        again["documents"][0],
        json!({"id": "leave", "status": "unchanged", "chunks": pieces.len(), "embedded": false})
    );
    assert_eq!(again["embedded_chunks"], 0, "nothing re-embedded");
    assert_eq!(relabeled["documents"][0]["status"], "updated");
    assert_eq!(
        relabeled["documents"][0]["embedded"], false,
        "metadata only: no new vectors"
    );
    assert_eq!(rewritten["documents"][0]["status"], "updated");
    assert_eq!(rewritten["documents"][0]["embedded"], true);
    assert_eq!(rewritten["documents"][1]["status"], "created");
    assert_eq!(coll["document_count"], 3, "{coll}");
    assert_eq!(del_status, 204);
    assert_eq!(gone_status, 404);
    assert_eq!(
        chunk_rows(&app, "hr").await,
        2,
        "the deleted document's chunks and vectors went with it"
    );
}

#[tokio::test]
async fn list_filter_page_and_delete_by_filter() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "v", "embedding": {"dimension": 3}})).await;
    let docs: Vec<_> = (0..25)
        .map(|i| json!({"id": format!("d{i:02}"), "embedding": [1.0, i as f32, 0.5], "metadata": {"n": i, "even": i % 2 == 0}}))
        .collect();
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/v/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201);

    let filter = urlencode(&json!({"even": true, "n": {"$gte": 10}}).to_string());
    let (_, page1) = call(
        &app,
        Method::GET,
        &format!("/v1/collections/v/documents?limit=4&filter={filter}"),
        None,
    )
    .await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = call(
        &app,
        Method::GET,
        &format!("/v1/collections/v/documents?limit=4&filter={filter}&cursor={cursor}"),
        None,
    )
    .await;
    let (_, by_time) = call(
        &app,
        Method::GET,
        "/v1/collections/v/documents?order_by=created_at&limit=2",
        None,
    )
    .await;
    let (bad_status, bad) = call(
        &app,
        Method::GET,
        &format!(
            "/v1/collections/v/documents?filter={}",
            urlencode(r#"{"n": {"$bad": 1}}"#)
        ),
        None,
    )
    .await;
    let (_, deleted) = call(
        &app,
        Method::POST,
        "/v1/collections/v/documents/delete",
        Some(json!({"filter": {"n": {"$lt": 5}}})),
    )
    .await;
    let (_, coll) = call(&app, Method::GET, "/v1/collections/v", None).await;

    let ids = |page: &serde_json::Value| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page1), ["d10", "d12", "d14", "d16"]);
    assert_eq!(ids(&page2), ["d18", "d20", "d22", "d24"]);
    assert_eq!(by_time["data"].as_array().unwrap().len(), 2);
    assert_eq!(bad_status, 400);
    assert_eq!(bad["code"], "invalid_filter");
    assert!(bad["message"].as_str().unwrap().contains("filter.n.$bad"), "{bad}");
    assert_eq!(deleted, json!({"deleted": 5}));
    assert_eq!(coll["document_count"], 20);
    assert_eq!(chunk_rows(&app, "v").await, 20);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_bad_record_writes_nothing_and_is_named() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "v", "embedding": {"dimension": 3}})).await;
    collection(&app, json!({"name": "t"})).await;

    let cases = [
        (
            "v",
            json!({"documents": [{"id": "ok", "embedding": [1, 2, 3]}, {"id": "short", "embedding": [1, 2]}]}),
            "short",
        ),
        (
            "v",
            json!({"documents": [{"id": "big", "embedding": [1e39, 0, 0]}]}),
            "big",
        ),
        ("v", json!({"documents": [{"id": "none"}]}), "none"),
        (
            "t",
            json!({"documents": [{"id": "a", "text": "fine"}, {"id": "blank", "text": "   "}]}),
            "blank",
        ),
        (
            "t",
            json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
            "a",
        ),
        ("t", json!({"documents": [{"id": "vec", "embedding": [1.0]}]}), "vec"),
    ];
    for (coll, body, named) in cases {
        let res = app
            .with(
                Method::POST,
                &format!("/v1/collections/{coll}/documents"),
                &app.owner_key,
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = assert_error(res, 400, "invalid_document").await;
        assert!(
            err["message"].as_str().unwrap().contains(&format!("`{named}`")),
            "{err}"
        );
    }
    let too_many: Vec<_> = (0..1001).map(|i| json!({"text": format!("t{i}")})).collect();
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/t/documents",
        Some(json!({"documents": too_many})),
    )
    .await;
    let (missing, _) = call(
        &app,
        Method::POST,
        "/v1/collections/nope/documents",
        Some(json!({"documents": [{"text": "x"}]})),
    )
    .await;

    assert_eq!(status, 400);
    assert_eq!(missing, 404);
    assert_eq!(
        chunk_rows(&app, "v").await + chunk_rows(&app, "t").await,
        0,
        "nothing written"
    );
}

#[tokio::test]
async fn quotas_refuse_a_write_whole() {
    let app = spawn_app().await;
    let limited = app
        .with(Method::PATCH, &format!("/v1/tenants/{}", app.default_tenant), ADMIN_KEY)
        .json(&json!({"max_documents": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status().as_u16(), 200);
    collection(&app, json!({"name": "v", "embedding": {"dimension": 2}})).await;

    let (first, _) = call(
        &app,
        Method::POST,
        "/v1/collections/v/documents",
        Some(json!({"documents": [
        {"id": "a", "embedding": [1, 0]}, {"id": "b", "embedding": [0, 1]}]})),
    )
    .await;
    let over = app
        .with(Method::POST, "/v1/collections/v/documents", &app.owner_key)
        .json(&json!({"documents": [{"id": "c", "embedding": [1, 1]}, {"id": "d", "embedding": [1, 2]}]}))
        .send()
        .await
        .unwrap();

    assert_eq!(first, 201);
    assert_error(over, 403, "quota_exceeded").await;
    assert_eq!(chunk_rows(&app, "v").await, 2);
}

#[tokio::test]
async fn documents_are_tenant_scoped() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "mine", "embedding": {"dimension": 2}})).await;
    call(
        &app,
        Method::POST,
        "/v1/collections/mine/documents",
        Some(json!({"documents": [{"id": "a", "embedding": [1, 0]}]})),
    )
    .await;
    let other = app.create_tenant("other").await;
    let (_, other_key) = app.create_key(other, "owner").await;

    for (method, path) in [
        (Method::GET, "/v1/collections/mine/documents"),
        (Method::GET, "/v1/collections/mine/documents/a"),
        (Method::GET, "/v1/collections/mine/documents/a/chunks"),
        (Method::DELETE, "/v1/collections/mine/documents/a"),
    ] {
        let res = app.with(method.clone(), path, &other_key).send().await.unwrap();
        assert_error(res, 404, "not_found").await;
    }
    let search = app
        .with(Method::POST, "/v1/collections/mine/search", &other_key)
        .json(&json!({"vector": [1, 0]}))
        .send()
        .await
        .unwrap();
    assert_error(search, 404, "not_found").await;
    assert_eq!(chunk_rows(&app, "mine").await, 1);
}
