//! What the embedded cluster is, apart from running it: its options, its errors and its log.
//! The launcher (`embedded`), the supervisor thread (`supervisor`) and the pid-file checks
//! (`pidfile`) all import it, and it imports none of them.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL binaries not found: {0} does not exist. Run `make run` or `scripts/bootstrap` \
         (it installs them under .onebase/), set ONEBASE_PG_BIN to a directory holding `postgres` \
         and `initdb`, or set DATABASE_URL to use an external database"
    )]
    BinariesMissing(PathBuf),
    #[error("onebase runs as root, and Postgres refuses to; the OS user `{0}` to run it as does not exist (set ONEBASE_PG_USER)")]
    UserMissing(String),
    #[error(
        "{path} exists and is not empty, but is not a PostgreSQL data directory (no PG_VERSION); refusing to touch it"
    )]
    NotADataDir { path: PathBuf },
    #[error("the OS user `{user}` cannot run {binary}: {detail}. Every directory above it must be readable and searchable by that user (or run onebase as a non-root user)")]
    BinaryNotAccessible {
        user: String,
        binary: PathBuf,
        detail: String,
    },
    #[error("initdb failed ({status}): {output}")]
    InitdbFailed { status: String, output: String },
    #[error("postgres exited during startup ({status}); last log lines:\n{log}")]
    ExitedDuringStartup { status: String, log: String },
    #[error("postgres did not accept connections within {0:?}; see {1}")]
    StartTimeout(Duration, PathBuf),
    #[error("another postgres (pid {0}) is running on this data directory and did not stop")]
    StalePostmasterAlive(i32),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The cluster's data directory (`PGDATA`).
    pub data_dir: PathBuf,
    /// Directory holding `postgres`, `initdb` and `pg_ctl`.
    pub bin_dir: PathBuf,
    /// OS user to run Postgres as when onebase runs as root.
    pub os_user: String,
    /// Port: names the unix socket and, if `listen_addresses` is set, the TCP port.
    pub port: u16,
    /// TCP addresses to listen on; empty means unix socket only.
    pub listen_addresses: String,
    /// `name=value` settings that override the tuned defaults.
    pub overrides: Vec<(String, String)>,
    /// How long to wait for the cluster to accept connections (crash recovery can be slow).
    pub start_timeout: Duration,
    /// Archive every finished WAL segment into this directory (point-in-time recovery).
    pub wal_archive: Option<PathBuf>,
}

impl EmbeddedOptions {
    /// The embedded cluster's options, as configured.
    pub fn from_config(config: &Config) -> Self {
        Self {
            data_dir: config.embedded.data_dir.clone(),
            bin_dir: config.pg_bin_dir(),
            os_user: config.embedded.pg_user.clone(),
            port: config.embedded.pg_port,
            listen_addresses: config.embedded.pg_listen.clone(),
            overrides: config.embedded.pg_setting.clone(),
            start_timeout: Duration::from_secs(config.embedded.pg_start_timeout_secs),
            wal_archive: config.embedded.wal_archive.clone(),
        }
    }
}

/// Postgres' own log in the cluster's data directory.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("postgres.log")
}

/// The last `n` lines of the log written since `from` (the offset at startup).
pub fn tail_from(path: &Path, from: u64, n: usize) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
