//! State shared by all handlers.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;

use crate::auth::AuthConfig;
use crate::embed::Embedder;
use crate::metrics::Metrics;

pub struct AppState {
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
    pub body_limit: usize,
    pub started_at: Instant,
    /// Wall-clock start, in Unix seconds (the `created` of `/v1/models`).
    pub started_unix: i64,
    pub auth: AuthConfig,
    pub embedder: Embedder,
    pub embed_limits: EmbedLimits,
    /// The OpenAPI document served at `/openapi.json`, with this server's limits in it.
    pub openapi: serde_json::Value,
    /// Embeddings of recent search queries.
    pub query_cache: crate::knowledge::query_cache::QueryCache,
    /// Background jobs' settings and wake-up bell.
    pub jobs: crate::jobs::JobSettings,
    /// Cosine similarity at which a new memory updates its scope's nearest one.
    pub memory_dedupe_threshold: f64,
}

/// Per-request limits of `/v1/embeddings`.
pub struct EmbedLimits {
    pub max_inputs: usize,
    pub max_chars: usize,
}
