//! Tenant isolation: through every endpoint, and in the database itself (row-level security).

use reqwest::Method;
use uuid::Uuid;

use crate::api::helpers::{assert_error, json, spawn_app, TestApp, ADMIN_KEY};

#[tokio::test]
async fn first_start_creates_the_default_tenant_with_a_working_owner_key() {
    let app = spawn_app().await;

    let (status, me) = json(
        app.with(Method::GET, "/v1/auth/me", &app.owner_key)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "owner");
    assert_eq!(me["actor_type"], "api_key");
    assert_eq!(me["tenant_id"], app.default_tenant.to_string());
    let (_, tenant) = json(
        app.with(
            Method::GET,
            &format!("/v1/tenants/{}", app.default_tenant),
            &app.owner_key,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(tenant["name"], "default");
}

#[tokio::test]
async fn requests_without_or_with_bad_credentials_are_401() {
    let app = spawn_app().await;

    let none = app.get("/v1/auth/me").await;
    let malformed = app.with(Method::GET, "/v1/auth/me", "ob_nope").send().await.unwrap();
    let unknown = app
        .with(
            Method::GET,
            "/v1/auth/me",
            &format!("ob_abcdefghijkl_{}", "A".repeat(43)),
        )
        .send()
        .await
        .unwrap();
    let not_bearer = app
        .client
        .get(app.url("/v1/auth/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();

    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_error(none, 401, "missing_credentials").await;
    assert_error(malformed, 401, "invalid_credentials").await;
    assert_error(unknown, 401, "invalid_credentials").await;
    assert_error(not_bearer, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_key_of_tenant_a_cannot_touch_anything_of_tenant_b() {
    let app = spawn_app().await;
    let a = app.create_tenant("a").await;
    let b = app.create_tenant("b").await;
    let (_, a_owner) = app.create_key(a, "owner").await;
    let (b_key_id, b_key) = app.create_key(b, "reader").await;

    let read = app
        .with(Method::GET, &format!("/v1/tenants/{b}"), &a_owner)
        .send()
        .await
        .unwrap();
    let update = app
        .with(Method::PATCH, &format!("/v1/tenants/{b}"), &a_owner)
        .json(&serde_json::json!({"name": "pwned"}))
        .send()
        .await
        .unwrap();
    let delete = app
        .with(Method::DELETE, &format!("/v1/tenants/{b}"), &a_owner)
        .send()
        .await
        .unwrap();
    let list_keys = app
        .with(Method::GET, &format!("/v1/tenants/{b}/keys"), &a_owner)
        .send()
        .await
        .unwrap();
    let make_key = app
        .with(Method::POST, &format!("/v1/tenants/{b}/keys"), &a_owner)
        .json(&serde_json::json!({"role": "owner"}))
        .send()
        .await
        .unwrap();
    let revoke_via_b = app
        .with(Method::DELETE, &format!("/v1/tenants/{b}/keys/{b_key_id}"), &a_owner)
        .send()
        .await
        .unwrap();
    // Naming its own tenant in the path but B's key id: RLS hides the row.
    let revoke_via_a = app
        .with(Method::DELETE, &format!("/v1/tenants/{a}/keys/{b_key_id}"), &a_owner)
        .send()
        .await
        .unwrap();
    let audit_b = app
        .with(Method::GET, &format!("/v1/audit?tenant_id={b}"), &a_owner)
        .send()
        .await
        .unwrap();
    let list_tenants = app.with(Method::GET, "/v1/tenants", &a_owner).send().await.unwrap();

    assert_error(read, 404, "not_found").await;
    assert_error(update, 404, "not_found").await;
    assert_error(delete, 403, "forbidden").await;
    assert_error(list_keys, 404, "not_found").await;
    assert_error(make_key, 404, "not_found").await;
    assert_error(revoke_via_b, 404, "not_found").await;
    assert_error(revoke_via_a, 404, "not_found").await;
    assert_error(audit_b, 404, "not_found").await;
    assert_error(list_tenants, 403, "forbidden").await;
    // B is untouched: its key still works and its name is unchanged.
    let (status, tenant) = json(
        app.with(Method::GET, &format!("/v1/tenants/{b}"), &b_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tenant["name"], "b");
    // A's audit log has nothing of B.
    let (_, audit) = json(app.with(Method::GET, "/v1/audit", &a_owner).send().await.unwrap()).await;
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] == a.to_string()),
        "{audit}"
    );
}

#[tokio::test]
async fn row_level_security_hides_other_tenants_rows_from_the_app_role() {
    let app = spawn_app().await;
    let a = app.create_tenant("a").await;
    let b = app.create_tenant("b").await;
    app.create_key(a, "reader").await;
    app.create_key(b, "reader").await;
    app.create_key(b, "writer").await;
    let mut client = app.pool.get().await.unwrap();

    // As the server's role, with tenant A set, and no WHERE clause at all.
    let tx = onebase::db::tenant_tx(&mut client, a).await.unwrap();
    let role: String = tx.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    let tenants: Vec<Uuid> = tx
        .query("SELECT id FROM tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key_tenants: Vec<Uuid> = tx
        .query("SELECT tenant_id FROM api_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let audit_of_b: i64 = tx
        .query_one("SELECT count(*) FROM audit_log WHERE tenant_id = $1", &[&b])
        .await
        .unwrap()
        .get(0);
    let updated = tx
        .execute("UPDATE api_keys SET name = 'x' WHERE tenant_id = $1", &[&b])
        .await
        .unwrap();
    let insert_into_b = tx
        .execute(
            "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, resource_type) VALUES ($1, 'system', 's', 'x', 'x')",
            &[&b],
        )
        .await;
    drop(tx);

    assert_eq!(role, onebase::db::APP_ROLE);
    assert_eq!(tenants, vec![a]);
    assert_eq!(key_tenants, vec![a]);
    assert_eq!(audit_of_b, 0);
    assert_eq!(updated, 0);
    assert!(insert_into_b.is_err(), "WITH CHECK rejects rows of another tenant");
}

#[tokio::test]
async fn without_a_tenant_set_the_app_role_sees_no_rows() {
    let app = spawn_app().await;
    app.create_tenant("a").await;
    let mut client = app.pool.get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE onebase_app").await.unwrap();
    let tenants: i64 = tx.query_one("SELECT count(*) FROM tenants", &[]).await.unwrap().get(0);
    let keys: i64 = tx.query_one("SELECT count(*) FROM api_keys", &[]).await.unwrap().get(0);
    let audit: i64 = tx
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);

    assert_eq!((tenants, keys, audit), (0, 0, 0));
}

/// The rule of migration V2, checked over the whole schema so later tables cannot skip it.
#[tokio::test]
async fn every_tenant_owned_table_has_rls_a_policy_and_a_cascading_tenant_fk() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();

    let rows = client
        .query(
            "SELECT c.relname::text, c.relrowsecurity, \
                    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), \
                    EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f' \
                            AND k.confrelid = 'tenants'::regclass AND k.confdeltype = 'c') \
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'admin_audit_log'",
            &[],
        )
        .await
        .unwrap();

    assert!(rows.len() >= 3, "api_keys, users, audit_log at least");
    for row in rows {
        let (table, rls, policies, fk): (String, bool, i64, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
        assert!(rls, "{table}: row level security not enabled");
        assert!(policies > 0, "{table}: no policy");
        assert!(fk, "{table}: tenant_id must reference tenants ON DELETE CASCADE");
    }
}

#[tokio::test]
async fn revoked_key_is_401_immediately_and_reader_cannot_write() {
    let app = spawn_app().await;
    let t = app.create_tenant("t").await;
    let (key_id, key) = app.create_key(t, "writer").await;
    let (_, reader) = app.create_key(t, "reader").await;

    let reader_patch = app
        .with(Method::PATCH, &format!("/v1/tenants/{t}"), &reader)
        .json(&serde_json::json!({"name": "n"}))
        .send()
        .await
        .unwrap();
    let reader_key = app
        .with(Method::POST, &format!("/v1/tenants/{t}/keys"), &reader)
        .json(&serde_json::json!({"role": "reader"}))
        .send()
        .await
        .unwrap();
    let before = app.with(Method::GET, "/v1/auth/me", &key).send().await.unwrap();
    let revoke = app
        .with(Method::DELETE, &format!("/v1/tenants/{t}/keys/{key_id}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let after = app.with(Method::GET, "/v1/auth/me", &key).send().await.unwrap();
    let again = app
        .with(Method::DELETE, &format!("/v1/tenants/{t}/keys/{key_id}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();

    assert_error(reader_patch, 403, "forbidden").await;
    assert_error(reader_key, 403, "forbidden").await;
    assert_eq!(before.status().as_u16(), 200);
    assert_eq!(revoke.status().as_u16(), 204);
    assert_error(after, 401, "invalid_credentials").await;
    assert_error(again, 404, "not_found").await;
    let (_, keys) = json(
        app.with(
            Method::GET,
            &format!("/v1/tenants/{t}/keys?include_revoked=true"),
            ADMIN_KEY,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let revoked = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.to_string())
        .unwrap();
    assert!(revoked["revoked_at"].is_string());
    assert!(
        revoked.get("key").is_none() && !keys.to_string().contains(&key),
        "secrets are never listed"
    );
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_rows_from_every_table() {
    let app = spawn_app().await;
    let doomed = app.create_tenant("doomed").await;
    let kept = app.create_tenant("kept").await;
    let (_, owner) = app.create_key(doomed, "owner").await;
    app.create_key(kept, "owner").await;
    let res = app
        .with(Method::POST, "/v1/auth/register", &owner)
        .json(&serde_json::json!({"email": "u@example.com", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    let delete = app
        .with(Method::DELETE, &format!("/v1/tenants/{doomed}"), ADMIN_KEY)
        .send()
        .await
        .unwrap();

    assert_eq!(delete.status().as_u16(), 204);
    let client = app.pool.get().await.unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' \
             AND c.relname <> 'admin_audit_log'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in &tables {
        let left: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
                &[&doomed],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} still has rows of the deleted tenant");
    }
    let tenant_rows: i64 = client
        .query_one("SELECT count(*) FROM tenants WHERE id = $1", &[&doomed])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenant_rows, 0);
    let kept_keys: i64 = client
        .query_one("SELECT count(*) FROM api_keys WHERE tenant_id = $1", &[&kept])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept_keys, 1, "other tenants keep their data");
    let logged: i64 = client
        .query_one(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'tenant.delete' AND resource_id = $1",
            &[&doomed.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1, "the deletion itself is audited server-wide");
    let gone = app.with(Method::GET, "/v1/auth/me", &owner).send().await.unwrap();
    assert_error(gone, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn every_change_writes_one_audit_row_in_its_transaction_and_bad_input_writes_none() {
    let app = spawn_app().await;
    let t = app.create_tenant("t").await;
    let (_, owner) = app.create_key(t, "owner").await;
    let count = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            let client = pool.get().await.unwrap();
            client
                .query_one("SELECT count(*) FROM audit_log WHERE tenant_id = $1", &[&t])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let before = count(&app).await;

    let created = app
        .with(Method::POST, &format!("/v1/tenants/{t}/keys"), &owner)
        .json(&serde_json::json!({"role": "reader", "name": "r"}))
        .send()
        .await
        .unwrap();
    let request_id = created.headers()["x-request-id"].to_str().unwrap().to_string();
    let (_, key) = json(created).await;
    let bad_role = app
        .with(Method::POST, &format!("/v1/tenants/{t}/keys"), &owner)
        .json(&serde_json::json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    let too_long = app
        .with(Method::POST, &format!("/v1/tenants/{t}/keys"), &owner)
        .json(&serde_json::json!({"role": "reader", "name": "x".repeat(201)}))
        .send()
        .await
        .unwrap();

    assert_error(bad_role, 400, "invalid_request").await; // not in the schema's role enum
    assert_error(too_long, 400, "validation_failed").await;
    assert_eq!(count(&app).await, before + 1);
    let (status, audit) = json(
        app.with(Method::GET, "/v1/audit?resource_type=api_key&limit=1", &owner)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let entry = &audit["data"][0];
    assert_eq!(entry["action"], "api_key.create");
    assert_eq!(entry["resource_id"], key["id"]);
    assert_eq!(entry["request_id"], request_id);
    assert_eq!(entry["actor_type"], "api_key");
    assert_eq!(entry["outcome"], "success");
    // Paging: the cursor leads to older entries, never the same one.
    let cursor = audit["next_cursor"].as_str().expect("more entries").to_string();
    let (_, older) = json(
        app.with(Method::GET, &format!("/v1/audit?limit=1&cursor={cursor}"), &owner)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(older["data"][0]["id"].as_i64() < entry["id"].as_i64());
    let readers_view = app
        .with(Method::GET, "/v1/audit", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_error(readers_view, 403, "forbidden").await;
}

#[tokio::test]
async fn admin_manages_tenants_and_limits_but_owners_cannot_change_limits() {
    let app = spawn_app().await;
    let t = app.create_tenant("t").await;
    let (_, owner) = app.create_key(t, "owner").await;

    let owner_rename = app
        .with(Method::PATCH, &format!("/v1/tenants/{t}"), &owner)
        .json(&serde_json::json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    let owner_limits = app
        .with(Method::PATCH, &format!("/v1/tenants/{t}"), &owner)
        .json(&serde_json::json!({"max_documents": 5}))
        .send()
        .await
        .unwrap();
    let admin_limits = app
        .with(Method::PATCH, &format!("/v1/tenants/{t}"), ADMIN_KEY)
        .json(&serde_json::json!({"max_documents": 5}))
        .send()
        .await
        .unwrap();
    let (_, list) = json(
        app.with(Method::GET, "/v1/tenants?limit=1", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;

    let (status, renamed) = json(owner_rename).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "renamed");
    assert_error(owner_limits, 403, "forbidden").await;
    let (_, limited) = json(admin_limits).await;
    assert_eq!(limited["max_documents"], 5);
    assert_eq!(limited["name"], "renamed");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let cursor = list["next_cursor"].as_str().unwrap();
    let (_, page2) = json(
        app.with(Method::GET, &format!("/v1/tenants?limit=10&cursor={cursor}"), ADMIN_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page2["data"][0]["id"], t.to_string());
    assert!(page2["next_cursor"].is_null());
}
