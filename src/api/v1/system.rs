//! Liveness, readiness and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::embed::ModelInfo;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: &'static str,
}

/// Liveness: answers without touching the database.
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn health() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct PostgresInfo {
    /// Server version, e.g. `18.6`.
    pub version: String,
    /// Database name.
    pub database: String,
}

#[derive(Serialize, ToSchema)]
pub struct PoolInfo {
    /// Connections currently open.
    pub size: usize,
    /// Configured maximum.
    pub max_size: usize,
    /// Idle connections.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

#[derive(Serialize, ToSchema)]
pub struct MigrationInfo {
    /// Highest applied migration version.
    pub applied_version: Option<i64>,
    /// Highest migration version embedded in this binary.
    pub latest_version: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "status": "ready",
    "postgres": {"version": "18.6", "database": "onebase"},
    "extensions": {"btree_gist": "1.8", "pg_trgm": "1.6", "plpgsql": "1.0", "vector": "0.8.6"},
    "migrations": {"applied_version": 1, "latest_version": 1},
    "pool": {"size": 1, "max_size": 8, "available": 1, "waiting": 0},
    "embedding": {"name": "all-MiniLM-L6-v2", "dims": 384, "precision": "fp32", "pooling": "mean",
        "max_length": 256, "source": "directory", "model_dir": ".onebase/models/all-MiniLM-L6-v2"},
    "uptime_seconds": 12
}))]
pub struct Ready {
    /// `ready` when the database answers.
    pub status: &'static str,
    pub postgres: PostgresInfo,
    /// Installed extensions and their versions.
    pub extensions: BTreeMap<String, String>,
    pub migrations: MigrationInfo,
    pub pool: PoolInfo,
    /// The embedding model served by `/v1/embeddings`.
    pub embedding: ModelInfo,
    pub uptime_seconds: u64,
}

/// Readiness: the database answers, with versions, migration state and pool statistics.
#[utoipa::path(
    get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "The database is unreachable (`database_unavailable`)", body = ErrorBody,
            example = json!({"code": "database_unavailable", "message": "database unavailable: timed out after 3s"}))
    )
)]
pub async fn ready(state: web::Data<AppState>) -> Result<web::Json<Ready>, ApiError> {
    // Probes must answer promptly even when the database hangs.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
    tokio::time::timeout(PROBE_TIMEOUT, ready_report(&state))
        .await
        .map_err(|_| ApiError::DatabaseUnavailable(format!("timed out after {}s", PROBE_TIMEOUT.as_secs())))?
}

async fn ready_report(state: &AppState) -> Result<web::Json<Ready>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_one("SELECT current_setting('server_version'), current_database()", &[])
        .await
        .map_err(|e| ApiError::DatabaseUnavailable(e.to_string()))?;
    let extensions = client
        .query("SELECT extname::text, extversion FROM pg_extension", &[])
        .await
        .map_err(|e| ApiError::DatabaseUnavailable(e.to_string()))?
        .into_iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let applied_version: Option<i64> = client
        .query_one("SELECT max(version)::bigint FROM refinery_schema_history", &[])
        .await
        .map_err(|e| ApiError::DatabaseUnavailable(e.to_string()))?
        .get(0);
    drop(client);
    let pool = state.pool.status();
    Ok(web::Json(Ready {
        status: "ready",
        postgres: PostgresInfo {
            version: row.get(0),
            database: row.get(1),
        },
        extensions,
        migrations: MigrationInfo {
            applied_version,
            latest_version: crate::db::migrations::latest_version(),
        },
        pool: PoolInfo {
            size: pool.size,
            max_size: pool.max_size,
            available: pool.available,
            waiting: pool.waiting,
        },
        embedding: state.embedder.info().clone(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4",
        body = String, example = "onebase_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 3"))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render(&state.pool, state.embedder.stats())?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
