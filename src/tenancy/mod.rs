//! The tenancy plane: tenants, their API keys and users, the audit log's reading side, and the
//! first-run setup (the default tenant, its owner key, the JWT secret).

pub mod audit_log;
pub mod keys;
pub mod setup;
pub mod tenants;
pub mod users;
