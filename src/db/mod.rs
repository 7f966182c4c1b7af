//! Database access shared by the resources: transaction scopes and small helpers.

pub mod pool;
pub mod replicas;
pub mod scope;

pub use pool::{Conn, Pool};
pub use scope::{as_owner, system_tx, tenant_scope, tenant_tx, APP_ROLE};
