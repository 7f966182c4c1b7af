//! Building and running the application: database preparation, then the HTTP server.
//!
//! The listener is bound before the server is built, so `--bind 127.0.0.1:0` (used by the tests)
//! picks a free port that [`Application::port`] reports.

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;

use crate::auth::{keys, AuthConfig};
use crate::config::Config;
use crate::db;
use crate::embed::Embedder;
use crate::error::ApiError;
use crate::jobs::model::JobKind;
use crate::jobs::{JobCtx, JobKinds, Outcome};
use crate::metrics::Metrics;
use crate::state::{AppState, EmbedLimits};
use crate::tenancy::setup::FirstRun;

/// Search query embeddings kept (about 1.6 KB each for 384 dimensions).
const QUERY_CACHE_ENTRIES: usize = 4096;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    first_run: Option<FirstRun>,
}

impl Application {
    /// Connects to the database described by `db`, checks pgvector, applies migrations and binds
    /// the HTTP listener. The server starts serving once [`Application::run_until_stopped`] is
    /// awaited (or the server future is spawned).
    pub async fn build(config: &Config, db: tokio_postgres::Config) -> anyhow::Result<Self> {
        Self::build_with_embedder(config, db, None).await
    }

    /// Like [`Application::build`], reusing an already loaded embedder (tests share one model
    /// across many apps) or loading the configured one when `None`.
    pub async fn build_with_embedder(
        config: &Config,
        db: tokio_postgres::Config,
        embedder: Option<Embedder>,
    ) -> anyhow::Result<Self> {
        // Before anything else touches a vector: a pgvector that dies on this CPU stops startup
        // here, with the cause, instead of serving into a crash loop (src/db/probe.rs).
        let server_log = config
            .database_url
            .is_none()
            .then(|| db::embedded::log_path(&config.embedded.data_dir));
        db::probe::once_per_server(&db, config.db_ca_file.as_deref(), server_log.as_deref()).await?;
        // The model loads while nothing else waits on it; inference never runs on the executor.
        let embedder = match embedder {
            Some(embedder) => embedder,
            None => {
                let embed_config = crate::embed::EmbedConfig::from_config(config);
                tokio::task::spawn_blocking(move || Embedder::load(embed_config))
                    .await
                    .context("loading the embedding model panicked")?
                    .context("loading the embedding model")?
            }
        };
        tracing::info!(model = ?embedder.info(), "embedding model loaded");
        let pool = db::build_pool(db, config.pool_size(), config.db_ca_file.as_deref())?;
        prepare_database(&pool).await?;
        let replicas = read_replicas(config)?;
        let auth = auth_config(config, &pool).await?;
        let first_run = crate::tenancy::setup::first_run(&pool).await?;

        let listener = TcpListener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener.local_addr().context("reading the bound address")?.port();
        let embed_limits = EmbedLimits {
            max_inputs: config.embed.embed_max_inputs,
            max_chars: config.embed.embed_max_chars,
        };
        let openapi = crate::openapi::document(&embed_limits, embedder.info())?;
        anyhow::ensure!(
            config.slow_request_ms >= 0.0 && config.slow_request_ms.is_finite(),
            "ONEBASE_SLOW_REQUEST_MS must be a number of milliseconds from 0"
        );
        let state = web::Data::new(AppState {
            pool: crate::db::Pool::new(pool),
            replicas: replicas.clone(),
            slow_request_ms: config.slow_request_ms,
            metrics: Arc::new(Metrics::new()?),
            body_limit: config.body_limit,
            started_at: Instant::now(),
            started_unix: chrono::Utc::now().timestamp(),
            auth,
            embedder,
            embed_limits,
            openapi,
            query_cache: crate::embed::query_cache::QueryCache::new(QUERY_CACHE_ENTRIES),
            key_cache: Default::default(),
            memory_dedupe_threshold: {
                let t = config.memory_dedupe_threshold;
                anyhow::ensure!(
                    (-1.0..=1.0).contains(&t),
                    "ONEBASE_MEMORY_DEDUPE_THRESHOLD must be from -1 to 1"
                );
                t
            },
            jobs: crate::state::JobSettings::new(
                config.import_limit,
                config.job_stale_secs,
                config.index_build_memory.as_deref(),
                config.sweep_interval_secs,
                crate::retention::Retention {
                    audit_log_days: config.retention_audit_log_days,
                    cache_keep_expired_secs: config.cache_keep_expired_secs,
                    cache_history_days: config.cache_history_days,
                    conversations_days: config.retention_conversations_days,
                    jobs_days: config.retention_jobs_days,
                },
            )?,
        });
        if let Some(replicas) = replicas {
            crate::db::replicas::spawn_monitor(replicas, state.pool.clone(), state.metrics.clone());
        }
        crate::jobs::worker::spawn(state.clone(), Arc::new(PlaneJobs), config.job_workers);
        crate::ops::stats::spawn_gauges(
            state.clone(),
            Duration::from_secs_f64(config.stats_interval_secs.max(1.0)),
        );
        let body_limit = config.body_limit;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(crate::api::refuse_nul))
                .wrap(Compress::default())
                .wrap(from_fn(crate::observe::observe))
                .configure(|cfg| crate::api::configure(cfg, body_limit))
        })
        .shutdown_timeout(config.shutdown_timeout().as_secs())
        // TCP_NODELAY: a response goes out in several writes (headers, then the body, in chunks
        // when compressed), and with Nagle's algorithm the later ones wait for the client's
        // delayed ACK of the first, which adds tens of milliseconds to a search of a few.
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
            }
        });
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener).context("starting the HTTP server")?.run();
        Ok(Application {
            port,
            server,
            state,
            first_run,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.state.pool
    }

    /// The `default` tenant and its owner key, when this start was the database's first.
    pub fn first_run(&self) -> Option<&FirstRun> {
        self.first_run.as_ref()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (graceful: in-flight requests finish first) or until the
    /// handle stops the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The read replicas' pools (`ONEBASE_READ_DATABASE_URL`), if any.
fn read_replicas(config: &Config) -> anyhow::Result<Option<Arc<crate::db::replicas::Replicas>>> {
    let urls: Vec<&String> = config
        .read_database_url
        .iter()
        .filter(|u| !u.trim().is_empty())
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    let max_lag = config.replica_max_lag_secs;
    anyhow::ensure!(
        max_lag > 0.0 && max_lag <= 3600.0,
        "ONEBASE_REPLICA_MAX_LAG_SECS must be above 0 and at most an hour"
    );
    let mut members = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let pg_config = tokio_postgres::Config::from_str(url.trim()).with_context(|| {
            format!(
                "ONEBASE_READ_DATABASE_URL: replica {} is not a valid PostgreSQL URL",
                i + 1
            )
        })?;
        let name = describe(&pg_config);
        let pool = db::build_pool_timed(
            pg_config,
            config.pool_size(),
            config.db_ca_file.as_deref(),
            Duration::from_secs(2),
        )?;
        members.push((name, crate::db::Pool::new(pool)));
    }
    let max_lag = Duration::from_secs_f64(max_lag);
    let check = (max_lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tracing::info!(
        replicas = members.len(),
        max_lag_secs = max_lag.as_secs_f64(),
        "read replicas configured"
    );
    Ok(Some(Arc::new(crate::db::replicas::Replicas::new(
        members, max_lag, check,
    ))))
}

/// `host:port/dbname` of a connection config, without credentials.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

async fn auth_config(config: &Config, pool: &Pool) -> anyhow::Result<AuthConfig> {
    let admin_key_hash = match &config.admin_key {
        Some(key) if key.len() < 32 => anyhow::bail!("ONEBASE_ADMIN_KEY must be at least 32 characters"),
        Some(key) => Some(keys::hash(key)),
        None => None,
    };
    Ok(AuthConfig {
        jwt_secret: crate::tenancy::setup::jwt_secret(pool, config.jwt_secret.as_deref()).await?,
        token_ttl: std::time::Duration::from_secs(config.token_ttl_secs),
        admin_key_hash,
    })
}

/// Checks that pgvector is usable, then applies pending migrations.
pub async fn prepare_database(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await.context("connecting to PostgreSQL")?;
    db::check_vector_available(&client).await?;
    db::migrations::run(&mut client).await?;
    drop(client);
    crate::knowledge::upgrade::run(pool)
        .await
        .context("converting collections to the partitioned layout")?;
    Ok(())
}

/// Each job kind's work, from the plane that owns it.
struct PlaneJobs;

impl JobKinds for PlaneJobs {
    fn run<'a>(&'a self, ctx: &'a JobCtx) -> BoxFuture<'a, Result<Outcome, ApiError>> {
        match ctx.job.kind {
            JobKind::Import => Box::pin(crate::knowledge::import_job::run(ctx)),
            JobKind::Merge => Box::pin(crate::knowledge::segments::merge(ctx)),
            JobKind::Compact => Box::pin(crate::knowledge::compaction::compact(ctx)),
            JobKind::Reindex => Box::pin(crate::knowledge::reindex::reindex(ctx)),
            JobKind::Reembed => Box::pin(crate::knowledge::reembed::run(ctx)),
            JobKind::Sweep => Box::pin(crate::ops::retention::run_job(ctx)),
        }
    }

    fn abandoned<'a>(
        &'a self,
        state: &'a AppState,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(crate::knowledge::import::drop_staging(state, params))
    }
}
