//! Command line and configuration. Every flag has an environment fallback, so the same binary is
//! configured by flags locally and by environment in containers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use utoipa::ToSchema;

/// Model installed by `scripts/bootstrap` and used when nothing else is configured.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// Pooling of the model's token vectors into one text vector (then L2-normalized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolingKind {
    /// Average of the real (non-padding) tokens: all-MiniLM-L6-v2 and most sentence-transformers.
    Mean,
    /// The first ([CLS]) token: bge, gte, mxbai and other CLS-trained models.
    Cls,
}

#[derive(Debug, Parser)]
#[command(
    name = "onebase",
    version,
    about = "One server and one PostgreSQL database for an AI application's data"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate {
        /// List applied and pending migrations instead of applying.
        #[arg(long)]
        status: bool,
    },
    /// Back up the database while the server keeps serving: a pg_dump custom-format file, or
    /// with --base a physical base backup of the embedded cluster for point-in-time recovery.
    Backup {
        /// The backup file (default: onebase-<database>-<UTC time>.dump here).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write a physical base backup into this new directory instead (pg_basebackup); with
        /// --wal-archive on the server, `restore --base` recovers to any moment after it.
        #[arg(long, conflicts_with = "out")]
        base: Option<PathBuf>,
    },
    /// Restore a backup into a new embedded data directory (--data-dir) or into the empty
    /// database of DATABASE_URL. A non-empty target is refused.
    Restore {
        /// A file written by `onebase backup` (or `pg_dump --format=custom`).
        #[arg(required_unless_present = "base", conflicts_with = "base")]
        file: Option<PathBuf>,
        /// A base backup directory written by `onebase backup --base`; its WAL is replayed from
        /// --wal-archive.
        #[arg(long, requires = "wal_archive")]
        base: Option<PathBuf>,
        /// Recover to this moment (RFC 3339, e.g. 2026-11-23T10:15:00Z); default: as far as the
        /// archive goes.
        #[arg(long, requires = "base")]
        to_time: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, global = true, env = "ONEBASE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// External PostgreSQL to use instead of the embedded one, e.g.
    /// postgres://user:pass@host:5432/db?sslmode=require
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Read replicas of that database (streaming standbys), comma-separated PostgreSQL URLs:
    /// searches and the other read-only endpoints read there when the replica is fresh enough
    /// for the tenant, else from the primary.
    #[arg(
        long,
        global = true,
        env = "ONEBASE_READ_DATABASE_URL",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub read_database_url: Vec<String>,

    /// The most a read replica may lag behind the primary and still serve reads, in seconds
    /// (a replica that lags more, or does not answer, is skipped until it catches up).
    #[arg(long, global = true, env = "ONEBASE_REPLICA_MAX_LAG_SECS", default_value_t = 5.0)]
    pub replica_max_lag_secs: f64,

    /// Requests slower than this many milliseconds are logged (warn, "slow request") with their
    /// route, request id and time in the database.
    #[arg(long, global = true, env = "ONEBASE_SLOW_REQUEST_MS", default_value_t = 1000.0)]
    pub slow_request_ms: f64,

    /// PEM file with extra CA certificates for TLS to an external database.
    #[arg(long, global = true, env = "ONEBASE_DB_CA_FILE")]
    pub db_ca_file: Option<PathBuf>,

    #[command(flatten)]
    pub embedded: EmbeddedConfig,

    /// Maximum number of pooled database connections (default: 4 per core, at least 8).
    #[arg(long, global = true, env = "ONEBASE_POOL_SIZE")]
    pub pool_size: Option<usize>,

    /// Largest accepted request body, in bytes.
    #[arg(long, global = true, env = "ONEBASE_BODY_LIMIT", default_value_t = 10 * 1024 * 1024)]
    pub body_limit: usize,

    /// Largest accepted NDJSON body of `POST /v1/collections/{name}/import`, in bytes.
    #[arg(long, global = true, env = "ONEBASE_IMPORT_LIMIT", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub import_limit: u64,

    /// Background job workers (imports, merges, reindexing, re-embedding, sweeps). 0 runs none.
    #[arg(long, global = true, env = "ONEBASE_JOB_WORKERS", default_value_t = 2)]
    pub job_workers: usize,

    /// Seconds without a heartbeat after which a running job is taken over (its worker died).
    #[arg(long, global = true, env = "ONEBASE_JOB_STALE_SECS", default_value_t = 30.0)]
    pub job_stale_secs: f64,

    /// Seconds between refreshes of the database gauges in /metrics (sizes, dead tuples,
    /// connections, cache hit ratio, replica lag).
    #[arg(long, global = true, env = "ONEBASE_STATS_INTERVAL_SECS", default_value_t = 60.0)]
    pub stats_interval_secs: f64,

    /// Seconds between runs of the periodic sweep (every retention rule: audit log, expired cache
    /// entries, old cache history, expired memories, idle conversations, finished jobs; and
    /// leftover import staging).
    #[arg(long, global = true, env = "ONEBASE_SWEEP_INTERVAL_SECS", default_value_t = 60.0)]
    pub sweep_interval_secs: f64,

    /// Seconds an expired cache entry stays readable with `allow_stale=true` before the sweep
    /// removes it (and its indexed document).
    #[arg(long, global = true, env = "ONEBASE_CACHE_KEEP_EXPIRED_SECS", default_value_t = 7 * 24 * 3600)]
    pub cache_keep_expired_secs: u64,

    /// Cosine similarity at or above which a new memory updates the nearest one of its scope
    /// instead of being added (the same content always does).
    #[arg(long, global = true, env = "ONEBASE_MEMORY_DEDUPE_THRESHOLD", default_value_t = 0.9)]
    pub memory_dedupe_threshold: f64,

    /// Days the cache keeps the earlier versions of an entry (0: forever; a tenant overrides it
    /// with `settings.retention.cache_history_days`).
    #[arg(long, global = true, env = "ONEBASE_CACHE_HISTORY_DAYS", default_value_t = 90)]
    pub cache_history_days: u32,

    /// Days the audit log keeps a row (0: forever; a tenant overrides it with
    /// `settings.retention.audit_log_days`).
    #[arg(long, global = true, env = "ONEBASE_RETENTION_AUDIT_LOG_DAYS", default_value_t = 90)]
    pub retention_audit_log_days: u32,

    /// Days a conversation may go untouched before the sweep deletes it (0: forever; a tenant
    /// overrides it with `settings.retention.conversations_days`).
    #[arg(
        long,
        global = true,
        env = "ONEBASE_RETENTION_CONVERSATIONS_DAYS",
        default_value_t = 0
    )]
    pub retention_conversations_days: u32,

    /// Days a finished job stays listed (0: forever; a tenant overrides it with
    /// `settings.retention.jobs_days`).
    #[arg(long, global = true, env = "ONEBASE_RETENTION_JOBS_DAYS", default_value_t = 30)]
    pub retention_jobs_days: u32,

    /// `maintenance_work_mem` for the index builds of jobs (a PostgreSQL size, e.g. 4GB; default:
    /// the database's own setting, which the embedded cluster sets to an eighth of the RAM).
    #[arg(long, global = true, env = "ONEBASE_INDEX_BUILD_MEMORY")]
    pub index_build_memory: Option<String>,

    /// Log format: json (one object per line) or pretty.
    #[arg(long, global = true, env = "ONEBASE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// HTTP worker threads (default: one per core).
    #[arg(long, global = true, env = "ONEBASE_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, global = true, env = "ONEBASE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// The server-wide admin key (at least 32 characters). Unset: no admin access.
    #[arg(long, global = true, env = "ONEBASE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// Secret for signing access tokens (HS256), at least 32 bytes. Unset: a random secret is
    /// generated on first start and kept in the database.
    #[arg(long, global = true, env = "ONEBASE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, global = true, env = "ONEBASE_TOKEN_TTL", default_value_t = 1800)]
    pub token_ttl_secs: u64,

    #[command(flatten)]
    pub embed: EmbedSettings,

    /// Local tools directory written by scripts/bootstrap (Postgres binaries, ONNX Runtime,
    /// models).
    #[arg(long, global = true, env = "ONEBASE_TOOLS_DIR", default_value = ".onebase")]
    pub tools_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EmbeddedConfig {
    /// Data directory of the embedded cluster (used when DATABASE_URL is not set).
    #[arg(long, global = true, env = "ONEBASE_DATA_DIR", default_value = "./data/postgres")]
    pub data_dir: PathBuf,

    /// Directory with the `postgres` and `initdb` binaries (default: <tools-dir>/pg/bin).
    #[arg(long, global = true, env = "ONEBASE_PG_BIN")]
    pub pg_bin: Option<PathBuf>,

    /// OS user to run the embedded Postgres as when onebase runs as root.
    #[arg(long, global = true, env = "ONEBASE_PG_USER", default_value = "postgres")]
    pub pg_user: String,

    /// Port of the embedded Postgres (names its unix socket; TCP only with --pg-listen).
    #[arg(long, global = true, env = "ONEBASE_PG_PORT", default_value_t = 5432)]
    pub pg_port: u16,

    /// TCP addresses for the embedded Postgres to listen on, e.g. 127.0.0.1 (default: none,
    /// unix socket only).
    #[arg(long, global = true, env = "ONEBASE_PG_LISTEN", default_value = "")]
    pub pg_listen: String,

    /// Postgres settings overriding the tuned defaults, comma-separated name=value pairs, e.g.
    /// shared_buffers=2GB,max_wal_size=8GB
    #[arg(long, global = true, env = "ONEBASE_PG_SETTINGS", value_parser = parse_setting, value_delimiter = ',')]
    pub pg_setting: Vec<(String, String)>,

    /// Name of the database onebase uses inside the embedded cluster.
    #[arg(long, global = true, env = "ONEBASE_DB_NAME", default_value = "onebase")]
    pub db_name: String,

    /// Seconds to wait for the embedded Postgres to accept connections (crash recovery of a
    /// large cluster can take a while).
    #[arg(long, global = true, env = "ONEBASE_PG_START_TIMEOUT", default_value_t = 300)]
    pub pg_start_timeout_secs: u64,

    /// Archive the embedded cluster's WAL continuously into this directory, for point-in-time
    /// recovery (`onebase backup --base`, then `onebase restore --base DIR --to-time T`).
    #[arg(long, global = true, env = "ONEBASE_WAL_ARCHIVE")]
    pub wal_archive: Option<PathBuf>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, got `{s}`"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("invalid setting name `{name}`"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

impl Config {
    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or_else(|| (num_cpus::get() * 4).max(8))
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn pg_bin_dir(&self) -> PathBuf {
        self.embedded
            .pg_bin
            .clone()
            .unwrap_or_else(|| self.tools_dir.join("pg").join("bin"))
    }
}

impl EmbedSettings {
    /// The served model's name: as configured, else the model directory's name, else the default.
    pub fn model_name(&self) -> String {
        self.embed_model
            .clone()
            .or_else(|| {
                let dir = self.model_dir.as_ref()?;
                Some(dir.file_name()?.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| DEFAULT_MODEL.to_string())
    }
}

#[derive(Debug, Clone, Args)]
pub struct EmbedSettings {
    /// Embedding model: all-MiniLM-L6-v2 (fp32) or all-MiniLM-L6-v2-int8 (quantized), a directory
    /// name under <tools-dir>/models; in builds with the `hub` feature also a fastembed model name
    /// (e.g. BGESmallENV15), downloaded on first start. It is the `model` clients name. Default:
    /// all-MiniLM-L6-v2, or with --model-dir that directory's name.
    #[arg(long, global = true, env = "ONEBASE_EMBED_MODEL")]
    pub embed_model: Option<String>,

    /// Directory of any BERT-style ONNX model with its tokenizer files (model.onnx,
    /// tokenizer.json, config.json, special_tokens_map.json, tokenizer_config.json); overrides
    /// --embed-model's directory, for offline deployments.
    #[arg(long, global = true, env = "ONEBASE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    /// ONNX Runtime library (default: <tools-dir>/lib/libonnxruntime.so).
    #[arg(long, global = true, env = "ONEBASE_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,

    /// Most texts per model call; concurrent requests are coalesced up to this size.
    #[arg(long, global = true, env = "ONEBASE_EMBED_MAX_BATCH", default_value_t = 32)]
    pub embed_max_batch: usize,

    /// Milliseconds a partial batch waits for more texts.
    #[arg(long, global = true, env = "ONEBASE_EMBED_MAX_WAIT_MS", default_value_t = 5)]
    pub embed_max_wait_ms: u64,

    /// Most texts queued for the model; beyond it requests get 503 with Retry-After.
    #[arg(long, global = true, env = "ONEBASE_EMBED_QUEUE", default_value_t = 1024)]
    pub embed_queue: usize,

    /// Inference threads (each a model session; ONNX Runtime splits the cores between them).
    #[arg(long, global = true, env = "ONEBASE_EMBED_THREADS", default_value_t = 1)]
    pub embed_threads: usize,

    /// Pooling of token vectors into a text vector: mean or cls (default: the model directory's
    /// 1_Pooling/config.json if it has one, else mean).
    #[arg(long, global = true, env = "ONEBASE_EMBED_POOLING", value_enum)]
    pub embed_pooling: Option<PoolingKind>,

    /// Download cache for fastembed model names, in builds with the `hub` feature (default:
    /// <tools-dir>/hub; HF_HOME and HF_ENDPOINT are honoured).
    #[arg(long, global = true, env = "ONEBASE_MODEL_CACHE")]
    pub model_cache: Option<PathBuf>,

    /// Most inputs in one /v1/embeddings request (413 above).
    #[arg(long, global = true, env = "ONEBASE_EMBED_MAX_INPUTS", default_value_t = 256)]
    pub embed_max_inputs: usize,

    /// Most characters in one input (400 above).
    #[arg(long, global = true, env = "ONEBASE_EMBED_MAX_CHARS", default_value_t = 32_768)]
    pub embed_max_chars: usize,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn model_name(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("onebase").chain(args.iter().copied())).unwrap();
        cli.config.embed.model_name()
    }

    #[test]
    fn the_model_name_defaults_to_the_model_directorys_name() {
        assert_eq!(model_name(&[]), "all-MiniLM-L6-v2");
        assert_eq!(
            model_name(&["--model-dir", "/srv/models/bge-small-en-v1.5"]),
            "bge-small-en-v1.5"
        );
        assert_eq!(
            model_name(&["--model-dir", "/srv/models/bge", "--embed-model", "bge-small"]),
            "bge-small"
        );
        assert_eq!(
            model_name(&["--embed-model", "all-MiniLM-L6-v2-int8"]),
            "all-MiniLM-L6-v2-int8"
        );
    }
}
