//! The tenants service: create, list, read, update and delete tenants (organizations), each in
//! one transaction with its audit row.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::{system_tx, tenant_tx};
use crate::error::ApiError;
use crate::http::body::integer;
use crate::http::pagination::{finish_page, Cursor, Limit};
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

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub data: Vec<Tenant>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const TENANT_COLUMNS: &str = "id, name, settings, max_documents, max_storage_bytes, created_at, updated_at";

/// A tenant row; `try_get`, because `settings` holds whatever JSON a client stored.
fn tenant_from_row(row: &tokio_postgres::Row) -> Result<Tenant, ApiError> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        settings: row.try_get("settings")?,
        max_documents: row.try_get("max_documents")?,
        max_storage_bytes: row.try_get("max_storage_bytes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        resource: "tenant",
        id: id.to_string(),
    }
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

/// Creates a tenant and records it in the new tenant's audit log.
pub async fn create(state: &AppState, principal: &Principal, req: CreateTenant) -> Result<Tenant, ApiError> {
    let name = validate_name(&req.name)?;
    let settings = validate_settings(req.settings)?.unwrap_or_else(|| serde_json::json!({}));
    let max_documents = validate_limit("max_documents", req.max_documents)?;
    let max_storage_bytes = validate_limit("max_storage_bytes", req.max_storage_bytes)?;

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
        principal,
        Event::new("tenant.create", "tenant", tenant.id).details(serde_json::json!({"name": name})),
    )
    .await?;
    tx.commit().await?;
    Ok(tenant)
}

/// A page of all tenants, oldest first.
pub async fn list(state: &AppState, limit: Limit, cursor: Option<Cursor>) -> Result<TenantList, ApiError> {
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
    let data: Vec<Tenant> = rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?;
    let (data, next_cursor) = finish_page(limit, data, |t| Cursor::new(t.created_at, t.id));
    Ok(TenantList { data, next_cursor })
}

/// Reads a tenant, in its own tenant scope (so another tenant's id is `not_found`).
pub async fn get(state: &AppState, id: Uuid) -> Result<Tenant, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, id).await?;
    let row = tx
        .query_opt(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"), &[&id])
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    tenant_from_row(&row)
}

/// Updates a tenant's name and settings, and (with the admin key only) its usage limits.
pub async fn update(state: &AppState, principal: &Principal, id: Uuid, req: UpdateTenant) -> Result<Tenant, ApiError> {
    if (req.max_documents.is_some() || req.max_storage_bytes.is_some()) && !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "usage limits can only be changed with the admin key".into(),
        ));
    }
    let name = req.name.as_deref().map(validate_name).transpose()?;
    let settings = validate_settings(req.settings)?;
    let max_documents = req
        .max_documents
        .map(|v| validate_limit("max_documents", v))
        .transpose()?;
    let max_storage_bytes = req
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
        .ok_or_else(|| not_found(id))?;
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
        principal,
        Event::new("tenant.update", "tenant", id).details(serde_json::json!({"fields": changed})),
    )
    .await?;
    tx.commit().await?;
    tenant_from_row(&row)
}

/// Deletes a tenant with all of its rows and its collections' schema, in one transaction, and
/// records it in the server-wide audit log, which outlives the tenant.
pub async fn delete(state: &AppState, principal: &Principal, id: Uuid) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = system_tx(&mut client).await?;
    // The tenant's collection tables live in its own schema, dropped first: the cascade from
    // `tenants` would otherwise delete their rows one statement at a time and fire the chunk
    // tables' statistics triggers, whose rows would then reference a tenant already gone. Rolled
    // back with the rest if the tenant does not exist.
    tx.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        crate::knowledge::ddl::schema_name(id)
    ))
    .await?;
    // Every tenant-owned table references tenants ON DELETE CASCADE (a test enforces it).
    let deleted = tx
        .query_opt("DELETE FROM tenants WHERE id = $1 RETURNING name", &[&id])
        .await?;
    let Some(row) = deleted else {
        return Err(not_found(id));
    };
    let name: String = row.try_get("name")?;
    audit::record_admin(
        &tx,
        None,
        principal,
        Event::new("tenant.delete", "tenant", id).details(serde_json::json!({"name": name})),
    )
    .await?;
    tx.commit().await?;
    // Its keys went with it.
    state.key_cache.clear();
    Ok(())
}
