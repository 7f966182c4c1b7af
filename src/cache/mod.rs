//! The tool-result cache: JSON results by (namespace, key) with a TTL, change detection by a
//! canonical content hash, the earlier versions in a history table, optional indexing into a
//! collection in the same transaction, and a retention sweep on the jobs machinery. Tables in
//! migrations/V5, under row-level security.

pub mod model;
pub mod service;
pub mod sweep;
