//! The application's state, which every handler and service receives: the pools, the embedder
//! and the query embedder, the caches and the settings.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::auth::AuthConfig;
use crate::db::{Conn, Pool};
use crate::embed::query_cache::QueryCache;
use crate::embed::Embedder;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::retention::Retention;

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
    pub query_cache: QueryCache,
    /// API keys resolved in the last 2 seconds.
    pub key_cache: crate::auth::key_cache::KeyCache,
    /// Background jobs' settings and wake-up bell.
    pub jobs: JobSettings,
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

    /// A query text's vector from the served model, through the cache of recent queries (searches
    /// of every plane share it).
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>, ApiError> {
        if let Some(cached) = self.query_cache.get(query) {
            self.metrics.query_cache_hits.inc();
            return Ok(cached.as_ref().clone());
        }
        self.metrics.query_cache_misses.inc();
        let vector = self
            .embedder
            .embed(vec![query.to_string()])
            .await?
            .vectors
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the embedder returned no vector")))?;
        self.query_cache
            .put(query.to_string(), std::sync::Arc::new(vector.clone()));
        Ok(vector)
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

/// The jobs' settings and the bell that wakes an idle worker when this server queues a job.
pub struct JobSettings {
    pub import_limit: u64,
    pub stale_secs: f64,
    /// `SET maintenance_work_mem = ...;` for index builds (validated: digits and a unit), or
    /// nothing to keep the database's setting.
    pub index_build_memory: String,
    pub wake: tokio::sync::Notify,
    pub sweep_interval_secs: f64,
    pub retention: Retention,
}

impl JobSettings {
    pub fn new(
        import_limit: u64,
        stale_secs: f64,
        index_build_memory: Option<&str>,
        sweep_interval_secs: f64,
        retention: Retention,
    ) -> anyhow::Result<Self> {
        let set_memory = match index_build_memory {
            None => String::new(),
            Some(size) => {
                let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &size[digits.len()..];
                let valid = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && ["kB", "MB", "GB"].contains(&unit);
                anyhow::ensure!(
                    valid,
                    "ONEBASE_INDEX_BUILD_MEMORY must be a size like 512MB or 2GB, not `{size}`"
                );
                format!("SET maintenance_work_mem = '{size}';")
            }
        };
        anyhow::ensure!(
            stale_secs > 0.0 && stale_secs.is_finite(),
            "ONEBASE_JOB_STALE_SECS must be positive"
        );
        anyhow::ensure!(
            sweep_interval_secs > 0.0 && sweep_interval_secs <= 86_400.0,
            "ONEBASE_SWEEP_INTERVAL_SECS must be above 0 and at most a day"
        );
        let days = [
            retention.audit_log_days,
            retention.cache_history_days,
            retention.conversations_days,
            retention.jobs_days,
        ];
        anyhow::ensure!(
            retention.cache_keep_expired_secs <= 100 * 365 * 86_400 && days.iter().all(|d| *d <= 100 * 365),
            "a retention flag (ONEBASE_RETENTION_*, ONEBASE_CACHE_KEEP_EXPIRED_SECS, ONEBASE_CACHE_HISTORY_DAYS) is beyond a century"
        );
        Ok(JobSettings {
            import_limit,
            stale_secs,
            index_build_memory: set_memory,
            wake: tokio::sync::Notify::new(),
            sweep_interval_secs,
            retention,
        })
    }

    /// Wakes an idle worker (call after committing a queued job).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
