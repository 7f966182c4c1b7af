//! The one way to open a transaction on tenant data.
//!
//! [`tenant_tx`] sets the tenant with a transaction-local `SET LOCAL` and switches to the
//! `onebase_app` role, which is neither superuser nor table owner, so PostgreSQL's row-level
//! security policies (migrations/V2) confine every statement of the transaction to that tenant.
//! Both settings end with the transaction, so a pooled connection never carries a tenant into
//! the next request. Code that forgets to use it and queries tenant data as `onebase_app`
//! sees no rows at all.
//!
//! [`system_tx`] runs as the connecting role (owner of the tables) and is reserved for the few
//! operations that are cross-tenant by nature: resolving a credential before the tenant is
//! known, creating, listing and deleting tenants, first-run setup.

use deadpool_postgres::{Object, Transaction};
use uuid::Uuid;

use crate::error::ApiError;

/// The role tenant transactions run as (created by migration V2).
pub const APP_ROLE: &str = "onebase_app";

/// Opens a transaction confined to `tenant` by row-level security.
pub async fn tenant_tx(client: &mut Object, tenant: Uuid) -> Result<Transaction<'_>, ApiError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&tenant_scope(tenant)).await?;
    Ok(tx)
}

/// The statements that confine a transaction to `tenant`, for a caller that sends them in one
/// write with its first query (tokio-postgres pipelines requests issued together, and
/// PostgreSQL runs them in order): a round trip less than [`tenant_tx`]. A literal SET (the
/// tenant is a Uuid, so its text is hex and hyphens): Citus forwards SET statements to its
/// workers, not set_config() calls.
pub fn tenant_scope(tenant: Uuid) -> String {
    format!("SET LOCAL onebase.tenant_id = '{tenant}'; SET LOCAL ROLE {APP_ROLE}")
}

/// Runs DDL (e.g. a collection's tables) inside a tenant transaction with the server's own
/// privileges, then returns to the tenant role: the DDL commits or rolls back with the rows.
pub async fn as_owner(tx: &Transaction<'_>, ddl: &str) -> Result<(), ApiError> {
    tx.batch_execute(&format!("SET LOCAL ROLE NONE; {ddl}; SET LOCAL ROLE {APP_ROLE}"))
        .await?;
    Ok(())
}

/// Opens a transaction with the server's own privileges (see the module docs for when).
pub async fn system_tx(client: &mut Object) -> Result<Transaction<'_>, ApiError> {
    Ok(client.transaction().await?)
}
