//! Who is calling: the `Principal` extractor resolves the bearer credential on every request.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{keys, token};
use crate::error::ApiError;
use crate::state::AppState;

/// Roles, weakest first: `reader` reads, `writer` also writes data, `owner` also manages the
/// tenant's keys, users and audit log, `admin` manages the whole server (all tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Owner,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }

    /// A role read back from the database, where a CHECK constraint limits the values; any other
    /// value is a bug, reported as an internal error.
    pub fn from_db(s: &str) -> Result<Role, ApiError> {
        Role::parse(s).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown role `{s}` in the database")))
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The roles a tenant's credential (an API key or a user) can be given: every role but `admin`,
/// which only the `ONEBASE_ADMIN_KEY` holder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantRole {
    Reader,
    Writer,
    Owner,
}

impl From<TenantRole> for Role {
    fn from(role: TenantRole) -> Role {
        match role {
            TenantRole::Reader => Role::Reader,
            TenantRole::Writer => Role::Writer,
            TenantRole::Owner => Role::Owner,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    ApiKey(Uuid),
    User(Uuid),
    /// The `ONEBASE_ADMIN_KEY` holder.
    Admin,
    /// The server itself (first-run setup).
    System,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    pub role: Role,
    /// The principal's own tenant; `None` for the admin.
    pub tenant_id: Option<Uuid>,
}

impl Principal {
    pub fn actor_type(&self) -> &'static str {
        match self.actor {
            Actor::ApiKey(_) => "api_key",
            Actor::User(_) => "user",
            Actor::Admin => "admin",
            Actor::System => "system",
        }
    }

    pub fn actor_id(&self) -> String {
        match &self.actor {
            Actor::ApiKey(id) | Actor::User(id) => id.to_string(),
            Actor::Admin => "admin".into(),
            Actor::System => "system".into(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this endpoint needs the admin key".into()))
        }
    }

    /// Authorizes an action on `tenant` needing at least `min`. Another tenant's resources are
    /// reported as not found, not forbidden, so ids of other tenants cannot be probed.
    pub fn require_tenant(&self, tenant: Uuid, min: Role) -> Result<(), ApiError> {
        if self.is_admin() {
            return Ok(());
        }
        if self.tenant_id != Some(tenant) {
            return Err(ApiError::NotFound {
                resource: "tenant",
                id: tenant.to_string(),
            });
        }
        self.require_role(min)
    }

    pub fn require_role(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; the credential has {}",
                min.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// The tenant whose data a data-plane endpoint (collections, documents, search) acts on: the
    /// credential's own, at role `min` or above. The admin key manages tenants and holds no data.
    pub fn data_tenant(&self, min: Role) -> Result<Uuid, ApiError> {
        let Some(tenant) = self.tenant_id else {
            return Err(ApiError::Forbidden(
                "data endpoints take a tenant's credential (an API key or a user's token); \
                 the admin key manages tenants"
                    .into(),
            ));
        };
        self.require_role(min)?;
        Ok(tenant)
    }

    /// The tenant a tenant-scoped endpoint acts on: the caller's own, or for the admin the one
    /// named by `requested` (e.g. a `tenant_id` query parameter).
    pub fn acting_tenant(&self, requested: Option<Uuid>) -> Result<Uuid, ApiError> {
        match (self.tenant_id, requested) {
            (Some(own), None) => Ok(own),
            (Some(own), Some(req)) if own == req => Ok(own),
            (Some(_), Some(req)) => Err(ApiError::NotFound {
                resource: "tenant",
                id: req.to_string(),
            }),
            (None, Some(req)) => Ok(req),
            (None, None) => Err(ApiError::validation(
                "tenant_id",
                "the admin key must name the tenant (tenant_id)",
            )),
        }
    }
}

fn bearer(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidCredentials("malformed Authorization header".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::InvalidCredentials("the Authorization header must be `Bearer <credential>`".into()))?;
    Ok(Some(token.trim().to_string()))
}

async fn resolve(state: &AppState, credential: &str) -> Result<Principal, ApiError> {
    if let Some(admin_hash) = &state.auth.admin_key_hash {
        if keys::hashes_equal(admin_hash, &keys::hash(credential)) {
            return Ok(Principal {
                actor: Actor::Admin,
                role: Role::Admin,
                tenant_id: None,
            });
        }
    }
    if credential.starts_with(keys::KEY_PREFIX) {
        if !keys::is_well_formed(credential) {
            return Err(ApiError::InvalidCredentials("malformed API key".into()));
        }
        return resolve_key(state, credential).await;
    }
    if credential.matches('.').count() == 2 {
        let claims = token::verify(&state.auth.jwt_secret, credential)?;
        return resolve_user(state, claims.sub, claims.tid).await;
    }
    Err(ApiError::InvalidCredentials(
        "the credential is neither an API key nor an access token".into(),
    ))
}

/// Key lookup runs with the server's privileges: the tenant is what the key tells us. A key
/// resolved in the last 2 seconds is not looked up again (see `key_cache`).
async fn resolve_key(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let hash = keys::hash(key);
    if let Some(principal) = state.key_cache.get(&hash) {
        return Ok(principal);
    }
    let generation = state.key_cache.generation();
    let client = state.pool.get().await?;
    // Prepared once per connection: every request with a key runs it.
    let statement = client
        .prepare_cached(
            "SELECT id, tenant_id, role, \
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale \
             FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&hash.as_slice()])
        .await?
        .ok_or_else(|| ApiError::InvalidCredentials("unknown or revoked API key".into()))?;
    let id: Uuid = row.get(0);
    let role = Role::from_db(row.get(2))?;
    // Throttled, so that a busy key does not send a write on every request: the lookup already
    // tells whether the recorded use is more than a minute old.
    if row.get::<_, bool>(3) {
        client
            .execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", &[&id])
            .await?;
    }
    let principal = Principal {
        actor: Actor::ApiKey(id),
        role,
        tenant_id: Some(row.get(1)),
    };
    state.key_cache.put(hash, principal.clone(), generation);
    Ok(principal)
}

async fn resolve_user(state: &AppState, user: Uuid, tenant: Uuid) -> Result<Principal, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT role FROM users WHERE id = $1 AND tenant_id = $2",
            &[&user, &tenant],
        )
        .await?
        .ok_or_else(|| ApiError::InvalidCredentials("the token's user no longer exists".into()))?;
    let role = Role::from_db(row.get(0))?;
    Ok(Principal {
        actor: Actor::User(user),
        role,
        tenant_id: Some(tenant),
    })
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))
}

/// The tenant whose credential a request carried (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct RequestTenant(pub Uuid);

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = bearer(req).and_then(|c| c.ok_or(ApiError::MissingCredentials));
        let state = state_of(req);
        let req = req.clone();
        Box::pin(async move {
            let principal = resolve(&*state?, &parsed?).await?;
            if let Some(tenant) = principal.tenant_id {
                // For the replica router (`observe` notes the tenant's writes).
                req.extensions_mut().insert(RequestTenant(tenant));
            }
            Ok(principal)
        })
    }
}

/// A principal when the request carries credentials, `None` when it carries none. Invalid
/// credentials are still an error: a bad token never silently downgrades to anonymous.
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequest for MaybePrincipal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = bearer(req);
        let state = state_of(req);
        Box::pin(async move {
            match parsed? {
                None => Ok(MaybePrincipal(None)),
                Some(credential) => Ok(MaybePrincipal(Some(resolve(&*state?, &credential).await?))),
            }
        })
    }
}
