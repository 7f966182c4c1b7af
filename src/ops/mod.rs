//! Operations: backup and restore of the one database (`onebase backup`, `onebase restore`),
//! statistics, retention, read replicas.

pub mod backup;

pub mod pitr;
pub mod retention;
pub mod stats;
