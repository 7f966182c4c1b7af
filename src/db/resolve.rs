//! Choosing the database: an external one from `DATABASE_URL`, or the embedded cluster.

use std::str::FromStr;

use anyhow::Context;

use crate::config::Config;
use crate::db::{self, embedded::EmbeddedPostgres};

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
    let opts = crate::db::embedded::EmbeddedOptions::from_config(config);
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(opts))
        .await
        .context("embedded postgres startup panicked")??;
    let admin = db::connect_once(&cluster.client_config("postgres")).await?;
    db::ensure_database(&admin, &config.embedded.db_name).await?;
    let pg_config = cluster.client_config(&config.embedded.db_name);
    Ok(Database {
        config: pg_config,
        embedded: Some(cluster),
    })
}

/// The database for a one-off command (`backup`) beside a server that may be running: an
/// external one, the embedded cluster a running server owns (reached through its socket and left
/// alone), or else the embedded cluster, started for the command and stopped after it.
pub async fn attach(config: &Config) -> anyhow::Result<Database> {
    if config.database_url.is_none() {
        if let Some((socket, port)) = db::embedded::running_socket(&config.embedded.data_dir) {
            let pg_config = db::embedded::socket_config(&socket, port, &config.embedded.db_name);
            return Ok(Database {
                config: pg_config,
                embedded: None,
            });
        }
    }
    resolve(config).await
}
