//! One jobs machinery, in PostgreSQL: imports, merges, reindexing, re-embedding and the periodic
//! sweep all run as rows of `jobs` (migrations/V4), claimed by the server's workers with
//! `FOR UPDATE SKIP LOCKED`, heartbeated, checkpointed in the transaction of the work they
//! cover, and resumed from that checkpoint when their worker died.

pub mod model;
pub mod store;
pub mod worker;

pub use worker::{JobCtx, JobKinds, Outcome};
