//! Operations: backup and restore of the one database (`onebase backup`, `onebase restore`).

pub mod backup;

pub mod pitr;
pub mod stats;
pub mod api;
