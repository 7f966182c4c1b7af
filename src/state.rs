//! State shared by all handlers.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::db::{Conn, Pool};
use crate::error::ApiError;

use crate::auth::AuthConfig;
use crate::embed::Embedder;
use crate::metrics::Metrics;

pub struct AppState {
    /// The primary.
    pub pool: Pool,
    /// Read replicas (`ONEBASE_READ_DATABASE_URL`), if any.
    pub replicas: Option<Arc<crate::db::replicas::Replicas>>,
    /// Requests slower than this are logged with their database time.
    pub slow_request_ms: f64,
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
    /// API keys resolved in the last 2 seconds.
    pub key_cache: crate::auth::key_cache::KeyCache,
    /// Background jobs' settings and wake-up bell.
    pub jobs: crate::jobs::JobSettings,
    /// Cosine similarity at which a new memory updates its scope's nearest one.
    pub memory_dedupe_threshold: f64,
}

impl AppState {
    /// A connection for a read-only request of `tenant`: a read replica's when one is fresh
    /// enough for the tenant (see `db::replicas`), else the primary's.
    pub async fn read_conn(&self, tenant: Uuid) -> Result<Conn, ApiError> {
        Ok(self.read_conn_at(tenant).await?.0)
    }

    /// [`AppState::read_conn`], and the replica it came from (`None`: the primary).
    pub async fn read_conn_at(&self, tenant: Uuid) -> Result<(Conn, Option<usize>), ApiError> {
        match &self.replicas {
            Some(replicas) => match replicas.read_conn(&self.pool, &self.metrics, tenant).await? {
                (conn, crate::db::replicas::Target::Replica(i)) => Ok((conn, Some(i))),
                (conn, crate::db::replicas::Target::Primary) => Ok((conn, None)),
            },
            None => {
                self.metrics.reads.with_label_values(&["primary"]).inc();
                Ok((self.pool.get().await?, None))
            }
        }
    }

    /// The primary, for a read that failed on replica `i` (which is marked down).
    pub async fn read_again_on_primary(&self, i: usize) -> Result<Conn, ApiError> {
        if let Some(replicas) = &self.replicas {
            replicas.failed(i);
        }
        self.metrics.reads.with_label_values(&["primary"]).inc();
        Ok(self.pool.get().await?)
    }
}

/// Per-request limits of `/v1/embeddings`.
pub struct EmbedLimits {
    pub max_inputs: usize,
    pub max_chars: usize,
}
