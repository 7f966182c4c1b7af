//! The `/v1` handlers, a file per resource: each extracts the request, authorizes it and calls
//! its plane's service.

pub mod audit;
pub mod auth;
pub mod cache;
pub mod collection_jobs;
pub mod collections;
pub mod conversations;
pub mod docs;
pub mod documents;
pub mod embeddings;
pub mod jobs;
pub mod keys;
pub mod memories;
pub mod ops;
pub mod runs;
pub mod system;
pub mod tenants;
