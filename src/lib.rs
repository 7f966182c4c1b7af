//! onebase: one Rust HTTP server and one PostgreSQL database for everything an AI application
//! stores.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod canonical;
pub mod config;
pub mod db;
pub mod embed;
pub mod embeddings;
pub mod error;
pub mod filter;
pub mod http;
pub mod jobs;
pub mod knowledge;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod request_id;
pub mod retention;
pub mod runs;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenancy;
