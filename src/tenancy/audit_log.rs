//! Reading the audit log: a tenant's entries, newest first, with filters. (Writing it is
//! `crate::audit`, in each request's own transaction.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::http::pagination::Limit;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 42, "tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "actor_type": "api_key",
    "actor_id": "5d1c7e0e-1b9a-4f0e-8e59-3c8a7f6b2d11", "action": "api_key.create", "resource_type": "api_key",
    "resource_id": "7f3e2d1c-0b9a-4f8e-9d7c-6b5a4f3e2d1c", "request_id": "5b0f5e0e-2f4c-4a4b-9a57-0d8cbbd0f1a7",
    "outcome": "success", "details": {"role": "writer"}, "created_at": "2026-11-22T10:00:00Z"}))]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Uuid,
    /// `api_key`, `user`, `admin` or `system`.
    pub actor_type: String,
    pub actor_id: String,
    /// e.g. `tenant.update`, `api_key.create`, `api_key.revoke`, `user.register`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub data: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditParams {
    /// Only entries about this resource type (e.g. `api_key`).
    pub resource_type: Option<String>,
    /// Only entries by this actor id (a key or user id, or `admin`).
    pub actor: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// For the admin key: which tenant's log.
    pub tenant_id: Option<Uuid>,
}

fn entry_from_row(row: &tokio_postgres::Row) -> Result<AuditEntry, ApiError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        actor_type: row.try_get("actor_type")?,
        actor_id: row.try_get("actor_id")?,
        action: row.try_get("action")?,
        resource_type: row.try_get("resource_type")?,
        resource_id: row.try_get("resource_id")?,
        request_id: row.try_get("request_id")?,
        outcome: row.try_get("outcome")?,
        details: row.try_get("details")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A page of `tenant`'s audit log, newest first; the cursor is the last entry's id.
pub async fn list(state: &AppState, tenant: Uuid, params: &AuditParams) -> Result<AuditList, ApiError> {
    let limit = Limit::parse(params.limit)?;
    let before: Option<i64> = match &params.cursor {
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::validation("cursor", "not a cursor returned by this endpoint"))?,
        ),
        None => None,
    };
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            "SELECT id, tenant_id, actor_type, actor_id, action, resource_type, resource_id, request_id, outcome, details, created_at \
             FROM audit_log \
             WHERE ($1::text IS NULL OR resource_type = $1) AND ($2::text IS NULL OR actor_id = $2) \
               AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::bigint IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            &[&params.resource_type, &params.actor, &params.since, &before, &limit.fetch()],
        )
        .await?;
    tx.commit().await?;
    let mut data: Vec<AuditEntry> = rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
    let next_cursor = limit
        .trim(&mut data)
        .then(|| data.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(AuditList { data, next_cursor })
}
