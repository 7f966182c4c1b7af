//! Choosing the database: an external one from `DATABASE_URL`, or the embedded cluster.

use std::str::FromStr;

use anyhow::Context;

use crate::config::Config;
use crate::pg::{self, embedded::EmbeddedPostgres};

/// Where the server's data lives. Holding the embedded cluster keeps it running; dropping it
/// shuts Postgres down.
pub struct Database {
    pub config: tokio_postgres::Config,
    pub embedded: Option<EmbeddedPostgres>,
}

pub async fn resolve(config: &Config) -> anyhow::Result<Database> {
    if let Some(url) = &config.database_url {
        let pg_config = tokio_postgres::Config::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
        return Ok(Database {
            config: pg_config,
            embedded: None,
        });
    }
    let opts = config.embedded_options();
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(opts))
        .await
        .context("embedded postgres startup panicked")??;
    let admin = pg::connect_once(&cluster.client_config("postgres")).await?;
    pg::ensure_database(&admin, &config.embedded.db_name).await?;
    let pg_config = cluster.client_config(&config.embedded.db_name);
    Ok(Database {
        config: pg_config,
        embedded: Some(cluster),
    })
}
