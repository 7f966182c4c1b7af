//! The one way to open a transaction on tenant data.
//!
//! [`tenant_tx`] sets the tenant with a transaction-local setting and switches to the
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
    tx.execute(
        "SELECT set_config('onebase.tenant_id', $1, true)",
        &[&tenant.to_string()],
    )
    .await?;
    tx.batch_execute("SET LOCAL ROLE onebase_app").await?;
    Ok(tx)
}

/// Opens a transaction with the server's own privileges (see the module docs for when).
pub async fn system_tx(client: &mut Object) -> Result<Transaction<'_>, ApiError> {
    Ok(client.transaction().await?)
}
