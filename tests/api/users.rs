//! Users: registration, login, access tokens.

use reqwest::Method;
use serde_json::json as j;

use crate::api::helpers::{assert_error, json, spawn_app, JWT_SECRET};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn an_owner_registers_a_user_who_logs_in_and_uses_the_token() {
    let app = spawn_app().await;

    let (status, user) = json(
        app.with(Method::POST, "/v1/auth/register", &app.owner_key)
            .json(&j!({"email": "Ada@Example.com", "password": PASSWORD, "role": "writer"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "writer");
    assert!(user.get("password_hash").is_none());

    let (status, login) = json(
        app.post_json(
            "/v1/auth/login",
            &j!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["expires_in"], 1800);
    let token = login["access_token"].as_str().unwrap();
    let (status, me) = json(app.with(Method::GET, "/v1/auth/me", token).send().await.unwrap()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["actor_type"], "user");
    assert_eq!(me["role"], "writer");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["tenant_id"], app.default_tenant.to_string());
    // A writer is not an owner.
    let denied = app.with(Method::GET, "/v1/audit", token).send().await.unwrap();
    assert_error(denied, 403, "forbidden").await;
}

#[tokio::test]
async fn wrong_password_unknown_email_duplicate_and_weak_password_are_rejected() {
    let app = spawn_app().await;
    let register = |email: &str, password: &str| {
        app.with(Method::POST, "/v1/auth/register", &app.owner_key)
            .json(&j!({"email": email, "password": password}))
            .send()
    };
    assert_eq!(
        register("bob@example.com", PASSWORD).await.unwrap().status().as_u16(),
        201
    );

    let duplicate = register("BOB@example.com", PASSWORD).await.unwrap();
    let weak = register("carol@example.com", "short").await.unwrap();
    let bad_email = register("not-an-email", PASSWORD).await.unwrap();
    let wrong = app
        .post_json(
            "/v1/auth/login",
            &j!({"email": "bob@example.com", "password": "wrong password!!"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/v1/auth/login",
            &j!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;

    assert_error(duplicate, 409, "email_taken").await;
    assert_error(weak, 400, "validation_failed").await;
    assert_error(bad_email, 400, "validation_failed").await;
    assert_error(wrong, 401, "invalid_credentials").await;
    assert_error(unknown, 401, "invalid_credentials").await;
    let client = app.pool.get().await.unwrap();
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "rejected registrations wrote nothing");
}

#[tokio::test]
async fn self_registration_needs_the_tenant_to_allow_it_and_yields_a_reader() {
    let app = spawn_app().await;
    let t = app.default_tenant;

    let closed = app
        .post_json(
            "/v1/auth/register",
            &j!({"tenant_id": t, "email": "a@example.com", "password": PASSWORD}),
        )
        .await;
    let open = app
        .with(Method::PATCH, &format!("/v1/tenants/{t}"), &app.owner_key)
        .json(&j!({"settings": {"allow_registration": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status().as_u16(), 200);
    let as_owner = app
        .post_json(
            "/v1/auth/register",
            &j!({"tenant_id": t, "email": "a@example.com", "password": PASSWORD, "role": "owner"}),
        )
        .await;
    let no_tenant = app
        .post_json(
            "/v1/auth/register",
            &j!({"email": "a@example.com", "password": PASSWORD}),
        )
        .await;
    let ok = app
        .post_json(
            "/v1/auth/register",
            &j!({"tenant_id": t, "email": "a@example.com", "password": PASSWORD}),
        )
        .await;

    assert_error(closed, 403, "forbidden").await;
    assert_error(as_owner, 403, "forbidden").await;
    assert_error(no_tenant, 400, "validation_failed").await;
    let (status, user) = json(ok).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["role"], "reader");
}

#[tokio::test]
async fn expired_and_tampered_tokens_are_401() {
    let app = spawn_app().await;
    app.with(Method::POST, "/v1/auth/register", &app.owner_key)
        .json(&j!({"email": "eve@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let (_, login) = json(
        app.post_json(
            "/v1/auth/login",
            &j!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    let token = login["access_token"].as_str().unwrap().to_string();
    let user_id: uuid::Uuid = login["user"]["id"].as_str().unwrap().parse().unwrap();

    // Signed with the real secret, but expired a minute ago.
    let now = chrono::Utc::now().timestamp();
    let claims = onebase::auth::token::Claims {
        sub: user_id,
        tid: app.default_tenant,
        role: "owner".into(),
        iat: now - 1900,
        exp: now - 60,
        iss: "onebase".into(),
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    // Payload swapped for one claiming the owner role, signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = "owner".into();
        engine.encode(payload.to_string())
    };
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);

    assert_error(
        app.with(Method::GET, "/v1/auth/me", &expired).send().await.unwrap(),
        401,
        "token_expired",
    )
    .await;
    assert_error(
        app.with(Method::GET, "/v1/auth/me", &tampered).send().await.unwrap(),
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.with(Method::GET, "/v1/auth/me", &token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
