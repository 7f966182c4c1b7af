//! The users service: registration, login (JWT access tokens) and "who am I".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::{password, token, Actor, Principal, Role, TenantRole};
use crate::db::{system_tx, tenant_tx};
use crate::error::{is_unique_violation, ApiError};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct RegisterRequest {
    /// The tenant to join. Optional for a tenant credential (its own tenant); required otherwise.
    pub tenant_id: Option<Uuid>,
    /// An email address (`local@domain.tld`), at most 254 characters; stored lower-cased.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// `owner`, `writer` or `reader` (default). Self-registration can only create readers.
    pub role: Option<TenantRole>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "9a2b7c1d-0e3f-4a5b-8c6d-7e8f9a0b1c2d", "tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10",
    "email": "ada@example.com", "role": "reader", "created_at": "2026-11-22T10:00:00Z"}))]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    /// Any string; an unknown or malformed email is `invalid_credentials`.
    pub email: String,
    /// Any string; a wrong password is `invalid_credentials`.
    pub password: String,
    /// Needed only when the email has accounts in several tenants.
    pub tenant_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9...", "token_type": "Bearer", "expires_in": 1800,
    "expires_at": "2026-11-22T10:30:00Z", "user": {"id": "9a2b7c1d-0e3f-4a5b-8c6d-7e8f9a0b1c2d",
    "tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "email": "ada@example.com", "role": "reader", "created_at": "2026-11-22T10:00:00Z"}}))]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: u64,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"actor_type": "api_key", "actor_id": "5d1c7e0e-1b9a-4f0e-8e59-3c8a7f6b2d11", "role": "owner",
    "tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "email": null}))]
pub struct Me {
    /// `api_key`, `user` or `admin`.
    pub actor_type: &'static str,
    pub actor_id: String,
    pub role: Role,
    /// Null for the admin key.
    pub tenant_id: Option<Uuid>,
    /// For users.
    pub email: Option<String>,
}

fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::validation(
            "email",
            "must be a valid email address of at most 254 characters",
        ))
    }
}

/// Creates a user. `caller` is the request's credential, if it sent one: an owner (or the admin)
/// may create any role in its tenant; without one, this is self-registration as a reader, only
/// into a tenant whose settings allow it. The checks interleave with validation in this order
/// (email, password, then who may register where), so they live here rather than in the handler.
pub async fn register(state: &AppState, caller: Option<Principal>, req: RegisterRequest) -> Result<User, ApiError> {
    let email = normalize_email(&req.email)?;
    password::validate(&req.password)?;
    let role = req.role.map_or(Role::Reader, Role::from);
    let tenant = match &caller {
        Some(principal) => {
            let tenant = principal.acting_tenant(req.tenant_id)?;
            principal.require_tenant(tenant, Role::Owner)?;
            tenant
        }
        None => req
            .tenant_id
            .ok_or_else(|| ApiError::validation("tenant_id", "required for self-registration"))?,
    };
    // Hash before opening the transaction: no connection is held during the expensive part.
    let password_hash = password::hash(req.password).await?;

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let settings: serde_json::Value = tx
        .query_opt("SELECT settings FROM tenants WHERE id = $1", &[&tenant])
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "tenant",
            id: tenant.to_string(),
        })?
        .try_get("settings")?;
    if caller.is_none() {
        if settings.get("allow_registration") != Some(&serde_json::Value::Bool(true)) {
            return Err(ApiError::Forbidden(
                "this tenant does not allow self-registration".into(),
            ));
        }
        if role != Role::Reader {
            return Err(ApiError::Forbidden(
                "self-registration creates readers; an owner can grant other roles".into(),
            ));
        }
    }
    let row = tx
        .query_one(
            "INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING id, created_at",
            &[&tenant, &email, &password_hash, &role.as_str()],
        )
        .await
        .map_err(|e| if is_unique_violation(&e, "users_tenant_email_key") { ApiError::EmailTaken } else { e.into() })?;
    let user = User {
        id: row.try_get("id")?,
        tenant_id: tenant,
        email,
        role,
        created_at: row.try_get("created_at")?,
    };
    let actor = caller.unwrap_or(Principal {
        actor: Actor::User(user.id),
        role,
        tenant_id: Some(tenant),
    });
    audit::record(
        &tx,
        tenant,
        &actor,
        Event::new("user.register", "user", user.id).details(serde_json::json!({"role": role})),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Checks email and password and issues an access token. Every failure to match is the same
/// `invalid_credentials`, so accounts cannot be probed.
pub async fn login(state: &AppState, req: LoginRequest) -> Result<TokenResponse, ApiError> {
    let email =
        normalize_email(&req.email).map_err(|_| ApiError::InvalidCredentials("wrong email or password".into()))?;
    if req.password.chars().count() > password::MAX_LEN {
        return Err(ApiError::InvalidCredentials("wrong email or password".into()));
    }
    // The tenant is what we are looking for, so this lookup is cross-tenant by nature.
    let mut client = state.pool.get().await?;
    let tx = system_tx(&mut client).await?;
    let rows = tx
        .query(
            "SELECT id, tenant_id, password_hash, role, created_at FROM users \
             WHERE email = $1 AND ($2::uuid IS NULL OR tenant_id = $2) LIMIT 2",
            &[&email, &req.tenant_id],
        )
        .await?;
    tx.commit().await?;
    drop(client);
    if rows.len() > 1 {
        return Err(ApiError::validation(
            "tenant_id",
            "this email has accounts in several tenants; name the tenant",
        ));
    }
    let row = rows.first();
    let stored_hash = row.map(|r| r.try_get::<_, String>("password_hash")).transpose()?;
    let ok = password::verify(req.password, stored_hash).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(ApiError::InvalidCredentials("wrong email or password".into()));
    };
    let role = Role::from_db(row.try_get("role")?)?;
    let user = User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        email,
        role,
        created_at: row.try_get("created_at")?,
    };
    let (access_token, exp) = token::issue(
        &state.auth.jwt_secret,
        user.id,
        user.tenant_id,
        role.as_str(),
        state.auth.token_ttl,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.auth.token_ttl.as_secs(),
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or_else(Utc::now),
        user,
    })
}

/// Describes the calling credential; for a user, with the email read from its tenant.
pub async fn me(state: &AppState, principal: &Principal) -> Result<Me, ApiError> {
    let email = match (&principal.actor, principal.tenant_id) {
        (Actor::User(id), Some(tenant)) => {
            let mut client = state.pool.get().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let email = tx
                .query_opt("SELECT email FROM users WHERE id = $1", &[id])
                .await?
                .map(|r| r.try_get("email"))
                .transpose()?;
            tx.commit().await?;
            email
        }
        _ => None,
    };
    Ok(Me {
        actor_type: principal.actor_type(),
        actor_id: principal.actor_id(),
        role: principal.role,
        tenant_id: principal.tenant_id,
        email,
    })
}
