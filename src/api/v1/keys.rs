//! A tenant's API keys: create (shown once), list, revoke.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::{keys, Principal, Role, TenantRole};
use crate::db::tenant_tx;
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
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

const KEY_COLUMNS: &str = "id, name, prefix, role, created_at, last_used_at, revoked_at";

fn key_from_row(row: &tokio_postgres::Row) -> Result<ApiKey, ApiError> {
    Ok(ApiKey {
        id: row.get(0),
        name: row.get(1),
        prefix: row.get(2),
        role: Role::from_db(row.get(3))?,
        created_at: row.get(4),
        last_used_at: row.get(5),
        revoked_at: row.get(6),
    })
}

/// Creates an API key for the tenant (owner or admin). The key is returned once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/keys", tag = "tenants", request_body = CreateApiKey,
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedApiKey, links(
            ("RevokeKey" = (operation_id = "revoke_key",
                parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id")))),
            ("ListKeys" = (operation_id = "list_keys", parameters(("id" = "$request.path.id")))),
        )),
        (status = 400, description = "`validation_failed`: name too long; `invalid_request`: e.g. role `admin`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn create_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let tenant = id.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
    let body = body.into_inner();
    let role = Role::from(body.role);
    let name = body.name.trim().to_string();
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
    let key_id: Uuid = row.get(0);
    audit::record(
        &tx,
        tenant,
        &principal,
        Event::new("api_key.create", "api_key", key_id)
            .details(serde_json::json!({"role": role, "prefix": new_key.prefix})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedApiKey {
        id: key_id,
        name,
        prefix: new_key.prefix,
        role,
        created_at: row.get(1),
        key: new_key.key,
    }))
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

/// Lists the tenant's keys: prefixes, roles, last use; never the secrets (owner or admin).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/keys", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id"), KeyListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys, oldest first", body = ApiKeyList),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn list_keys(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    query: web::Query<KeyListParams>,
) -> Result<web::Json<ApiKeyList>, ApiError> {
    let tenant = id.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    ensure_tenant_visible(&tx, tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND ($2 OR revoked_at IS NULL) \
                 ORDER BY created_at, id"
            ),
            &[&tenant, &query.include_revoked],
        )
        .await?;
    tx.commit().await?;
    Ok(web::Json(ApiKeyList {
        data: rows.iter().map(key_from_row).collect::<Result<_, _>>()?,
    }))
}

/// Revokes a key; requests with it fail with 401 from now on (owner or admin).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/keys/{key_id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id"), ("key_id" = Uuid, Path, description = "Key id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active key in this tenant", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, key_id) = path.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
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
    let prefix: String = revoked.get(0);
    audit::record(
        &tx,
        tenant,
        &principal,
        Event::new("api_key.revoke", "api_key", key_id).details(serde_json::json!({"prefix": prefix})),
    )
    .await?;
    tx.commit().await?;
    state.key_cache.clear();
    Ok(HttpResponse::NoContent().finish())
}
