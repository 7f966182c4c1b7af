//! Who is calling: the principal a bearer credential resolves to, and its role. The front door's
//! extractor (`api::extract`) calls [`resolve`] on every request.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::key_cache::KeyCache;
use super::{keys, token, AuthConfig};
use crate::db::Pool;
use crate::error::ApiError;

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

/// What resolving a credential reads: the admin key and token secret, the cache of recently
/// resolved keys, and the pool for the lookup.
#[derive(Clone, Copy)]
pub struct Resolver<'a> {
    pub config: &'a AuthConfig,
    pub key_cache: &'a KeyCache,
    pub pool: &'a Pool,
}

/// The principal a bearer credential names: the admin key, an API key or a user's access token.
pub async fn resolve(with: Resolver<'_>, credential: &str) -> Result<Principal, ApiError> {
    if let Some(admin_hash) = &with.config.admin_key_hash {
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
        return resolve_key(with, credential).await;
    }
    if credential.matches('.').count() == 2 {
        let claims = token::verify(&with.config.jwt_secret, credential)?;
        return resolve_user(with, claims.sub, claims.tid).await;
    }
    Err(ApiError::InvalidCredentials(
        "the credential is neither an API key nor an access token".into(),
    ))
}

/// Key lookup runs with the server's privileges: the tenant is what the key tells us. A key
/// resolved in the last 2 seconds is not looked up again (see `key_cache`).
async fn resolve_key(with: Resolver<'_>, key: &str) -> Result<Principal, ApiError> {
    let hash = keys::hash(key);
    if let Some(principal) = with.key_cache.get(&hash) {
        return Ok(principal);
    }
    let generation = with.key_cache.generation();
    let client = with.pool.get().await?;
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
    with.key_cache.put(hash, principal.clone(), generation);
    Ok(principal)
}

async fn resolve_user(with: Resolver<'_>, user: Uuid, tenant: Uuid) -> Result<Principal, ApiError> {
    let client = with.pool.get().await?;
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

/// The tenant whose credential a request carried (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct RequestTenant(pub Uuid);
