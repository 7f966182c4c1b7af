//! Tenants (organizations); their API keys are in `keys.rs`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::{Principal, Role};
use crate::db::{system_tx, tenant_tx};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::{integer, JsonObject};
use crate::http::pagination::{Cursor, PageParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "name": "acme", "settings": {"allow_registration": true},
    "max_documents": 100000, "max_storage_bytes": null,
    "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z"
}))]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    /// Free-form settings. `allow_registration: true` lets anyone register a reader account;
    /// `retention: {audit_log_days, cache_keep_expired_secs, cache_history_days,
    /// conversations_days, jobs_days}` overrides the server's retention rules for this tenant
    /// (numbers from 0; `GET /v1/admin/retention` lists the rules).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Usage limit on documents (null: unlimited).
    pub max_documents: Option<i64>,
    /// Usage limit on stored bytes (null: unlimited).
    pub max_storage_bytes: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TENANT_COLUMNS: &str = "id, name, settings, max_documents, max_storage_bytes, created_at, updated_at";

/// A tenant row; `try_get`, because `settings` holds whatever JSON a client stored.
fn tenant_from_row(row: &tokio_postgres::Row) -> Result<Tenant, ApiError> {
    Ok(Tenant {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        settings: row.try_get(2)?,
        max_documents: row.try_get(3)?,
        max_storage_bytes: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "acme", "settings": {"allow_registration": true}, "max_documents": 100000}))]
pub struct CreateTenant {
    /// 1 to 200 characters, not all white space (leading and trailing white space is trimmed).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// A JSON object of at most 64 KiB. `allow_registration: true` lets anyone register a reader.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Usage limit on documents, >= 0 (null or absent: unlimited).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0)]
    pub max_documents: Option<i64>,
    /// Usage limit on stored bytes, >= 0 (null or absent: unlimited).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0)]
    pub max_storage_bytes: Option<i64>,
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let len = name.chars().count();
    if len == 0 || len > 200 {
        return Err(ApiError::validation("name", "must be 1 to 200 characters"));
    }
    Ok(name.to_string())
}

fn validate_settings(settings: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, ApiError> {
    match settings {
        Some(v) if !v.is_object() => Err(ApiError::validation("settings", "must be a JSON object")),
        Some(v) if v.to_string().len() > 64 * 1024 => Err(ApiError::validation("settings", "must be at most 64 KiB")),
        Some(v) => {
            crate::retention::validate_tenant_settings(&v)?;
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

fn validate_limit(field: &'static str, value: Option<i64>) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if v < 0 => Err(ApiError::validation(field, "must be >= 0 (or null for unlimited)")),
        other => Ok(other),
    }
}

/// Creates a tenant (admin only).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Tenant, links(
            ("GetTenant" = (operation_id = "get_tenant", parameters(("id" = "$response.body#/id")))),
            ("UpdateTenant" = (operation_id = "update_tenant", parameters(("id" = "$response.body#/id")))),
            ("DeleteTenant" = (operation_id = "delete_tenant", parameters(("id" = "$response.body#/id")))),
            ("CreateKey" = (operation_id = "create_key", parameters(("id" = "$response.body#/id")))),
            ("ListKeys" = (operation_id = "list_keys", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`validation_failed`, `invalid_json`, `invalid_request`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
    )
)]
pub async fn create_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let body = body.into_inner();
    let name = validate_name(&body.name)?;
    let settings = validate_settings(body.settings)?.unwrap_or_else(|| serde_json::json!({}));
    let max_documents = validate_limit("max_documents", body.max_documents)?;
    let max_storage_bytes = validate_limit("max_storage_bytes", body.max_storage_bytes)?;

    let mut client = state.pool.get().await?;
    let tx = system_tx(&mut client).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tenants (name, settings, max_documents, max_storage_bytes) VALUES ($1, $2, $3, $4) \
                 RETURNING {TENANT_COLUMNS}"
            ),
            &[&name, &settings, &max_documents, &max_storage_bytes],
        )
        .await?;
    let tenant = tenant_from_row(&row)?;
    audit::record(
        &tx,
        tenant.id,
        &principal,
        Event::new("tenant.create", "tenant", tenant.id).details(serde_json::json!({"name": name})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(tenant))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub data: Vec<Tenant>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists all tenants (admin only), oldest first.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 400, description = "`validation_failed`: bad limit or cursor", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
    )
)]
pub async fn list_tenants(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageParams>,
) -> Result<web::Json<TenantList>, ApiError> {
    principal.require_admin()?;
    let (limit, cursor) = query.parse()?;
    let (after_ts, after_id) = cursor.map(|c| (Some(c.created_at), Some(c.id))).unwrap_or((None, None));
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {TENANT_COLUMNS} FROM tenants \
                 WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2) \
                 ORDER BY created_at, id LIMIT $3"
            ),
            &[&after_ts, &after_id, &limit.fetch()],
        )
        .await?;
    let mut data: Vec<Tenant> = rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?;
    let next_cursor = limit
        .trim(&mut data)
        .then(|| data.last().map(|t| Cursor::new(t.created_at, t.id).encode()))
        .flatten();
    Ok(web::Json(TenantList { data, next_cursor }))
}

/// Reads a tenant: the admin reads any, a tenant's own credentials read their tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 404, description = "`not_found` (also for other tenants' ids)", body = ErrorBody),
    )
)]
pub async fn get_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<web::Json<Tenant>, ApiError> {
    let id = id.into_inner();
    principal.require_tenant(id, Role::Reader)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, id).await?;
    let row = tx
        .query_opt(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"), &[&id])
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "tenant",
            id: id.to_string(),
        })?;
    tx.commit().await?;
    Ok(web::Json(tenant_from_row(&row)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "acme-renamed", "max_documents": null}))]
pub struct UpdateTenant {
    /// 1 to 200 characters, not all white space (leading and trailing white space is trimmed).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// Replaces the settings object.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Admin only. >= 0; `null` removes the limit.
    #[serde(default, deserialize_with = "integer::nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub max_documents: Option<Option<i64>>,
    /// Admin only. >= 0; `null` removes the limit.
    #[serde(default, deserialize_with = "integer::nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub max_storage_bytes: Option<Option<i64>>,
}

/// Updates a tenant. Owners may change `name` and `settings`; usage limits need the admin key.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants", request_body = UpdateTenant,
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated tenant", body = Tenant),
        (status = 400, description = "`validation_failed`, `invalid_json`, `invalid_request`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an owner, or limits changed without the admin key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn update_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<UpdateTenant>,
) -> Result<web::Json<Tenant>, ApiError> {
    let id = id.into_inner();
    principal.require_tenant(id, Role::Owner)?;
    let body = body.into_inner();
    if (body.max_documents.is_some() || body.max_storage_bytes.is_some()) && !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "usage limits can only be changed with the admin key".into(),
        ));
    }
    let name = body.name.as_deref().map(validate_name).transpose()?;
    let settings = validate_settings(body.settings)?;
    let max_documents = body
        .max_documents
        .map(|v| validate_limit("max_documents", v))
        .transpose()?;
    let max_storage_bytes = body
        .max_storage_bytes
        .map(|v| validate_limit("max_storage_bytes", v))
        .transpose()?;

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, id).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE tenants SET \
                   name = coalesce($2, name), \
                   settings = coalesce($3, settings), \
                   max_documents = CASE WHEN $4 THEN $5 ELSE max_documents END, \
                   max_storage_bytes = CASE WHEN $6 THEN $7 ELSE max_storage_bytes END, \
                   updated_at = now() \
                 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
            ),
            &[
                &id,
                &name,
                &settings,
                &max_documents.is_some(),
                &max_documents.flatten(),
                &max_storage_bytes.is_some(),
                &max_storage_bytes.flatten(),
            ],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "tenant",
            id: id.to_string(),
        })?;
    let changed: Vec<&str> = [
        ("name", name.is_some()),
        ("settings", settings.is_some()),
        ("max_documents", max_documents.is_some()),
        ("max_storage_bytes", max_storage_bytes.is_some()),
    ]
    .iter()
    .filter_map(|(f, c)| c.then_some(*f))
    .collect();
    audit::record(
        &tx,
        id,
        &principal,
        Event::new("tenant.update", "tenant", id).details(serde_json::json!({"fields": changed})),
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(tenant_from_row(&row)?))
}

/// Deletes a tenant and all of its data in one transaction (admin only).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with every row of the tenant"),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let id = id.into_inner();
    let mut client = state.pool.get().await?;
    let tx = system_tx(&mut client).await?;
    // Every tenant-owned table references tenants ON DELETE CASCADE (a test enforces it).
    let deleted = tx
        .query_opt("DELETE FROM tenants WHERE id = $1 RETURNING name", &[&id])
        .await?;
    let Some(row) = deleted else {
        return Err(ApiError::NotFound {
            resource: "tenant",
            id: id.to_string(),
        });
    };
    let name: String = row.get(0);
    // The tenant's collection tables live in its own schema, which the cascade does not reach.
    tx.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        crate::knowledge::ddl::schema_name(id)
    ))
    .await?;
    audit::record_admin(
        &tx,
        None,
        &principal,
        Event::new("tenant.delete", "tenant", id).details(serde_json::json!({"name": name})),
    )
    .await?;
    tx.commit().await?;
    // Its keys went with it.
    state.key_cache.clear();
    Ok(HttpResponse::NoContent().finish())
}
