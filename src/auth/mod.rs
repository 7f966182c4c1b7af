//! Authentication and roles.
//!
//! Requests carry `Authorization: Bearer <credential>`, where the credential is either
//! * an API key `ob_<prefix>_<secret>`: only the SHA-256 of the whole key is stored; the key is
//!   looked up by hash, and the answer kept for 2 seconds (`key_cache`): a revoked key fails at
//!   once on the server that revoked it, and within 2 seconds on any other sharing the database;
//! * an access token (JWT, HS256) from `POST /v1/auth/login`, valid for 30 minutes by default;
//!   the user is re-checked on every request, so deleting a user ends their tokens;
//! * the admin key from `ONEBASE_ADMIN_KEY` (compared by hash, never stored).

pub mod key_cache;
pub mod keys;
pub mod password;
pub mod principal;
pub mod token;

pub use principal::{Actor, Principal, RequestTenant, Role, TenantRole};

/// Authentication settings resolved at startup.
pub struct AuthConfig {
    pub jwt_secret: Vec<u8>,
    pub token_ttl: std::time::Duration,
    /// SHA-256 of `ONEBASE_ADMIN_KEY`, when set.
    pub admin_key_hash: Option<[u8; 32]>,
}
