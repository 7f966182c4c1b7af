//! Database access shared by the resources: transaction scopes and small helpers.

pub mod scope;

pub use scope::{as_owner, system_tx, tenant_tx, APP_ROLE};
