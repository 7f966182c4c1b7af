//! One jobs machinery, in PostgreSQL: imports, merges, reindexing, re-embedding and the periodic
//! sweep all run as rows of `jobs` (migrations/V4), claimed by the server's workers with
//! `FOR UPDATE SKIP LOCKED`, heartbeated, checkpointed in the transaction of the work they
//! cover, and resumed from that checkpoint when their worker died.

pub mod model;
pub mod store;
pub mod worker;

pub use worker::{JobCtx, Outcome};

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

pub use crate::ops::retention::Retention;

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
