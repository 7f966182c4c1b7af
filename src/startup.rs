//! Building and running the application: database preparation, then the HTTP server.
//!
//! The listener is bound before the server is built, so `--bind 127.0.0.1:0` (used by the tests)
//! picks a free port that [`Application::port`] reports.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use deadpool_postgres::Pool;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pg;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects to the database described by `db`, checks pgvector, applies migrations and binds
    /// the HTTP listener. The server starts serving once [`Application::run_until_stopped`] is
    /// awaited (or the server future is spawned).
    pub async fn build(config: &Config, db: tokio_postgres::Config) -> anyhow::Result<Self> {
        let pool = pg::build_pool(db, config.pool_size(), config.db_ca_file.as_deref())?;
        prepare_database(&pool).await?;

        let listener =
            TcpListener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let state = web::Data::new(AppState {
            pool,
            metrics: Arc::new(Metrics::new()?),
            body_limit: config.body_limit,
            started_at: Instant::now(),
        });
        let body_limit = config.body_limit;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(Compress::default())
                .wrap(from_fn(crate::observe::observe))
                .configure(|cfg| crate::routes::configure(cfg, body_limit))
        })
        .shutdown_timeout(config.shutdown_timeout().as_secs());
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .context("starting the HTTP server")?
            .run();
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.state.pool
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

/// Checks that pgvector is usable, then applies pending migrations.
pub async fn prepare_database(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await.context("connecting to PostgreSQL")?;
    pg::check_vector_available(&client).await?;
    pg::migrations::run(&mut **client).await?;
    Ok(())
}
