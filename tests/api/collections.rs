//! Collections: the registry row and the collection's own tables, created, changed and dropped
//! together, per tenant.

use reqwest::Method;
use serde_json::json;

use crate::api::helpers::{assert_error, json, spawn_app, TestApp, ADMIN_KEY};

async fn create(app: &TestApp, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    json(
        app.with(Method::POST, "/v1/collections", key)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Tables whose name holds the collection id (hex), in any schema.
async fn tables_of(app: &TestApp, collection_id: &str) -> Vec<String> {
    let hex = collection_id.replace('-', "");
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relname LIKE '%' || $1 ORDER BY 1",
            &[&hex],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn create_read_list_update_delete() {
    let app = spawn_app().await;
    let key = app.owner_key.clone();

    let (status, created) = create(
        &app,
        &key,
        json!({"name": "handbook", "description": "HR", "metadata": {"team": "people"}}),
    )
    .await;
    let (dup_status, dup) = create(&app, &key, json!({"name": "handbook"})).await;
    let got = app
        .with(Method::GET, "/v1/collections/handbook", &key)
        .send()
        .await
        .unwrap();
    let (_, got) = json(got).await;
    let (_, listed) = json(
        app.with(Method::GET, "/v1/collections?limit=10", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let renamed = app
        .with(Method::PATCH, "/v1/collections/handbook", &key)
        .json(&json!({"description": "HR policies"}))
        .send()
        .await
        .unwrap();
    let (renamed_status, renamed) = json(renamed).await;
    let id = created["id"].as_str().unwrap().to_string();
    let tables_before = tables_of(&app, &id).await;
    let deleted = app
        .with(Method::DELETE, "/v1/collections/handbook", &key)
        .send()
        .await
        .unwrap();
    let after = app
        .with(Method::GET, "/v1/collections/handbook", &key)
        .send()
        .await
        .unwrap();

    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["embedding"],
        json!({"model": "all-MiniLM-L6-v2", "dimension": 384})
    );
    assert_eq!(created["distance"], "cosine");
    assert_eq!(
        created["index"],
        json!({"type": "hnsw", "m": 16, "ef_construction": 128})
    );
    assert_eq!(created["text_search"]["language"], "english");
    assert_eq!(created["chunking"], json!({"max_tokens": 200, "overlap_tokens": 20}));
    assert_eq!(dup_status, 409, "{dup}");
    assert_eq!(dup["code"], "conflict");
    assert_eq!(got["document_count"], 0);
    assert!(got["disk_bytes"].as_i64().unwrap() > 0, "{got}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(renamed_status, 200, "{renamed}");
    assert_eq!(renamed["description"], "HR policies");
    assert_eq!(renamed["metadata"], json!({"team": "people"}));
    assert_eq!(
        tables_before.len(),
        3,
        "docs, chunks and text statistics tables: {tables_before:?}"
    );
    assert_eq!(deleted.status().as_u16(), 204);
    assert_error(after, 404, "not_found").await;
    assert!(
        tables_of(&app, &id).await.is_empty(),
        "the tables went with the collection"
    );
}

#[tokio::test]
async fn index_distance_language_and_bring_your_own_vectors() {
    let app = spawn_app().await;
    let key = app.owner_key.clone();

    let (_, ivf) = create(
        &app,
        &key,
        json!({"name": "ivf", "distance": "l2", "index": {"type": "ivfflat", "lists": 10},
        "text_search": {"language": "simple"}, "chunking": {"max_tokens": 64, "overlap_tokens": 8}}),
    )
    .await;
    let (_, byo) = create(
        &app,
        &key,
        json!({"name": "byo", "embedding": {"dimension": 8}, "index": {"type": "none"}}),
    )
    .await;
    let (_, later) = create(&app, &key, json!({"name": "later", "embedding": {"dimension": null}})).await;
    let (wrong_dim, _) = create(
        &app,
        &key,
        json!({"name": "x", "embedding": {"model": "all-MiniLM-L6-v2", "dimension": 8}}),
    )
    .await;
    let (bad_model, model_err) = create(
        &app,
        &key,
        json!({"name": "y", "embedding": {"model": "text-embedding-3-small"}}),
    )
    .await;
    let (bad_name, _) = create(&app, &key, json!({"name": "no spaces"})).await;
    let (_, low_ef) = create(
        &app,
        &key,
        json!({"name": "z", "index": {"type": "hnsw", "m": 48, "ef_construction": 64}}),
    )
    .await;
    let (big_chunks, _) = create(&app, &key, json!({"name": "w", "chunking": {"max_tokens": 1000}})).await;

    assert_eq!(ivf["index"], json!({"type": "ivfflat", "lists": 10}), "{ivf}");
    assert_eq!(ivf["distance"], "l2");
    assert_eq!(ivf["text_search"]["language"], "simple");
    assert_eq!(byo["embedding"], json!({"model": null, "dimension": 8}), "{byo}");
    assert_eq!(later["embedding"], json!({"model": null, "dimension": null}), "{later}");
    assert_eq!(wrong_dim, 400);
    assert_eq!((bad_model, model_err["code"].as_str()), (404, Some("model_not_found")));
    assert_eq!(bad_name, 400);
    assert_eq!(
        low_ef["index"]["ef_construction"], 96,
        "raised to pgvector's floor, 2 * m: {low_ef}"
    );
    assert_eq!(big_chunks, 400, "chunks longer than the model's input");
    let client = app.pool.get().await.unwrap();
    let index: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'chunks_' || replace($1, '-', '') || '_s1_embedding_idx'",
            &[&ivf["id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        index.contains("ivfflat (embedding)") && index.contains("lists='10'"),
        "{index}"
    ); // vector_l2_ops is ivfflat's default
}

#[tokio::test]
async fn collections_are_tenant_scoped_and_need_a_tenant_writer() {
    let app = spawn_app().await;
    let other = app.create_tenant("other").await;
    let (_, other_owner) = app.create_key(other, "owner").await;
    let (_, reader) = app.create_key(app.default_tenant, "reader").await;
    let (status, _) = create(&app, &other_owner, json!({"name": "secret"})).await;
    assert_eq!(status, 201);

    let peek = app
        .with(Method::GET, "/v1/collections/secret", &app.owner_key)
        .send()
        .await
        .unwrap();
    let drop = app
        .with(Method::DELETE, "/v1/collections/secret", &app.owner_key)
        .send()
        .await
        .unwrap();
    let (_, mine) = json(
        app.with(Method::GET, "/v1/collections", &app.owner_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (same_name, _) = create(&app, &app.owner_key, json!({"name": "secret"})).await;
    let as_reader = app
        .with(Method::POST, "/v1/collections", &reader)
        .json(&json!({"name": "r"}))
        .send()
        .await
        .unwrap();
    let as_admin = app
        .with(Method::GET, "/v1/collections", ADMIN_KEY)
        .send()
        .await
        .unwrap();

    assert_error(peek, 404, "not_found").await;
    assert_error(drop, 404, "not_found").await;
    assert!(mine["data"].as_array().unwrap().is_empty(), "{mine}");
    assert_eq!(same_name, 201, "names are unique per tenant, not globally");
    assert_error(as_reader, 403, "forbidden").await;
    assert_error(as_admin, 403, "forbidden").await;
}

#[tokio::test]
async fn collection_tables_live_in_the_tenants_schema_and_go_with_the_tenant() {
    let app = spawn_app().await;
    let doomed = app.create_tenant("doomed").await;
    let (_, owner) = app.create_key(doomed, "owner").await;
    let (_, created) = create(&app, &owner, json!({"name": "c"})).await;
    let id = created["id"].as_str().unwrap().replace('-', "");
    // With chunks, whose statistics triggers the deletion must not trip over.
    let written = app
        .with(Method::POST, "/v1/collections/c/documents", &owner)
        .json(&json!({"documents": [{"id": "d", "text": "Rows and their statistics go with the tenant."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status().as_u16(), 201);
    let client = app.pool.get().await.unwrap();

    let rows = client
        .query(
            "SELECT c.relname::text, n.nspname::text = 'tenant_' || replace($2::text, '-', ''), \
                    EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f' \
                            AND k.confrelid = 'tenants'::regclass AND k.confdeltype = 'c') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relname LIKE '%' || $1",
            &[&id, &doomed.to_string()],
        )
        .await
        .unwrap();
    let deleted = app
        .with(Method::DELETE, &format!("/v1/tenants/{doomed}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let schema_left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_' || replace($1::text, '-', '')",
            &[&doomed.to_string()],
        )
        .await
        .unwrap()
        .get(0);

    assert_eq!(rows.len(), 3, "docs, chunks and text statistics");
    for row in rows {
        let (table, in_tenant_schema, fk): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert!(
            in_tenant_schema && fk,
            "{table}: in the tenant's schema {in_tenant_schema}, cascading fk {fk}"
        );
    }
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(schema_left, 0, "the tenant's schema is dropped with the tenant");
}
