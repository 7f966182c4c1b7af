//! The audit log: one row per mutating request, written in the request's own transaction so
//! that the change and its record commit or roll back together.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::request_id;

pub struct Event<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<String>,
    pub details: serde_json::Value,
}

impl<'a> Event<'a> {
    pub fn new(action: &'a str, resource_type: &'a str, resource_id: impl ToString) -> Self {
        Event {
            action,
            resource_type,
            resource_id: Some(resource_id.to_string()),
            details: serde_json::json!({}),
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Records `event` for `tenant` in the tenant's audit log.
pub async fn record(tx: &Transaction<'_>, tenant: Uuid, actor: &Principal, event: Event<'_>) -> Result<(), ApiError> {
    insert(tx, TENANT_LOG, Some(tenant), actor, event).await
}

/// Records a server-wide event (one that outlives its tenant, such as the tenant's deletion).
pub async fn record_admin(
    tx: &Transaction<'_>,
    tenant: Option<Uuid>,
    actor: &Principal,
    event: Event<'_>,
) -> Result<(), ApiError> {
    insert(tx, ADMIN_LOG, tenant, actor, event).await
}

const TENANT_LOG: &str = "INSERT INTO audit_log \
    (tenant_id, actor_type, actor_id, action, resource_type, resource_id, request_id, details) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const ADMIN_LOG: &str = "INSERT INTO admin_audit_log \
    (tenant_id, actor_type, actor_id, action, resource_type, resource_id, request_id, details) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

async fn insert(
    tx: &Transaction<'_>,
    sql: &str,
    tenant: Option<Uuid>,
    actor: &Principal,
    event: Event<'_>,
) -> Result<(), ApiError> {
    tx.execute(
        sql,
        &[
            &tenant,
            &actor.actor_type(),
            &actor.actor_id(),
            &event.action,
            &event.resource_type,
            &event.resource_id,
            &request_id::current(),
            &event.details,
        ],
    )
    .await?;
    Ok(())
}
