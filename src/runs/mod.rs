//! The runs plane: an agent platform's execution log. Runs (idempotent creation, a validated
//! lifecycle), their steps, artifacts and LLM calls (tokens and exact NUMERIC costs), per-run
//! totals and tenant-wide usage. Tables in migrations/V5, under row-level security.

pub mod children;
pub mod model;
pub mod service;
pub mod usage;
