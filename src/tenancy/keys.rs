//! The API keys service: create (the key is returned once), list and revoke a tenant's keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::{keys, Principal, Role, TenantRole};
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "5d1c7e0e-1b9a-4f0e-8e59-3c8a7f6b2d11", "name": "ingest worker", "prefix": "k3x9q2m7a1b4",
    "role": "writer", "created_at": "2026-11-22T10:00:00Z", "last_used_at": null, "revoked_at": null
}))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The visible part of the key: keys look like `ob_<prefix>_<secret>`.
    pub prefix: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "5d1c7e0e-1b9a-4f0e-8e59-3c8a7f6b2d11", "name": "ingest worker", "prefix": "k3x9q2m7a1b4",
    "role": "writer", "created_at": "2026-11-22T10:00:00Z",
    "key": "ob_k3x9q2m7a1b4_q7Vd0m4uQ2n1c8Zr5xYwE3tH6jK9pL0aS2dF4gH7jK8"
}))]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The key. Shown only in this response: store it now.
    pub key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ingest worker", "role": "writer"}))]
pub struct CreateApiKey {
    /// A label, up to 200 characters (leading and trailing white space is trimmed).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// `owner`, `writer` or `reader`.
    pub role: TenantRole,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct KeyListParams {
    /// Include revoked keys (default false).
    #[serde(default)]
    pub include_revoked: bool,
}

const KEY_COLUMNS: &str = "id, name, prefix, role, created_at, last_used_at, revoked_at";

fn key_from_row(row: &tokio_postgres::Row) -> Result<ApiKey, ApiError> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        role: Role::from_db(row.try_get("role")?)?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Inside a tenant transaction, the tenant row is visible only if it exists.
async fn ensure_tenant_visible(tx: &deadpool_postgres::Transaction<'_>, tenant: Uuid) -> Result<(), ApiError> {
    tx.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant])
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound {
            resource: "tenant",
            id: tenant.to_string(),
        })
}

/// Creates a key for `tenant`; only its hash is stored, so the answer is the one time the key
/// is shown.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    tenant: Uuid,
    req: CreateApiKey,
) -> Result<CreatedApiKey, ApiError> {
    let role = Role::from(req.role);
    let name = req.name.trim().to_string();
    if name.chars().count() > 200 {
        return Err(ApiError::validation("name", "must be at most 200 characters"));
    }
    let new_key = keys::generate();
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    ensure_tenant_visible(&tx, tenant).await?;
    let row = tx
        .query_one(
            "INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, role, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
            &[
                &tenant,
                &name,
                &new_key.prefix,
                &new_key.hash.as_slice(),
                &role.as_str(),
                &principal.actor_id(),
            ],
        )
        .await?;
    let key_id: Uuid = row.try_get("id")?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("api_key.create", "api_key", key_id)
            .details(serde_json::json!({"role": role, "prefix": new_key.prefix})),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedApiKey {
        id: key_id,
        name,
        prefix: new_key.prefix,
        role,
        created_at: row.try_get("created_at")?,
        key: new_key.key,
    })
}

/// The tenant's keys, oldest first (revoked ones only when asked for).
pub async fn list(state: &AppState, tenant: Uuid, params: &KeyListParams) -> Result<ApiKeyList, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    ensure_tenant_visible(&tx, tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND ($2 OR revoked_at IS NULL) \
                 ORDER BY created_at, id"
            ),
            &[&tenant, &params.include_revoked],
        )
        .await?;
    tx.commit().await?;
    Ok(ApiKeyList {
        data: rows.iter().map(key_from_row).collect::<Result<_, _>>()?,
    })
}

/// Revokes an active key of the tenant and forgets this server's cached keys, so that the key
/// fails at once here (and within the cache's 2 seconds on other servers).
pub async fn revoke(state: &AppState, principal: &Principal, tenant: Uuid, key_id: Uuid) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let revoked = tx
        .query_opt(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING prefix",
            &[&key_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "api_key",
            id: key_id.to_string(),
        })?;
    let prefix: String = revoked.try_get("prefix")?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("api_key.revoke", "api_key", key_id).details(serde_json::json!({"prefix": prefix})),
    )
    .await?;
    tx.commit().await?;
    state.key_cache.clear();
    Ok(())
}
