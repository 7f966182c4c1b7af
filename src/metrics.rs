//! Prometheus metrics: requests and latency per route and status, plus the database pool's and
//! the embedder's gauges and counters (refreshed at scrape time from their own counters).

use prometheus::{
    Counter, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_size: IntGauge,
    pool_max_size: IntGauge,
    pool_available: IntGauge,
    pool_waiting: IntGauge,
    embed_queued: IntGauge,
    embed_queue_capacity: IntGauge,
    embed_texts: IntCounter,
    embed_tokens: IntCounter,
    embed_calls: IntCounter,
    embed_busy: Counter,
    /// Search queries whose embedding came from the query cache, or had to be computed.
    pub query_cache_hits: IntCounter,
    pub query_cache_misses: IntCounter,
    /// Jobs by kind and state (refreshed by the job supervisor every few seconds).
    pub jobs: IntGaugeVec,
    /// Units (records, chunks) done by jobs, by kind.
    pub job_units: IntCounterVec,
    /// Running jobs' progress in percent, by kind (the least advanced job of the kind).
    pub job_progress: GaugeVec,
    /// Rows each retention rule deleted, its failures, and when the sweep last ran.
    pub retention_deleted: IntCounterVec,
    pub retention_errors: IntCounterVec,
    pub retention_last_run: IntGauge,
    /// Time each request spent holding database connections, per route.
    pub db_time: HistogramVec,
    /// Read-only requests by where they read: `primary` or `replica`.
    pub reads: IntCounterVec,
    /// Each read replica's lag as the router measures it (-1 until first seen), and whether
    /// it answers.
    pub replica_lag_seconds: GaugeVec,
    pub replica_up: IntGaugeVec,
    /// The database's figures, refreshed every `--stats-interval-secs` by [`crate::ops::stats`].
    pub db_bytes: IntGauge,
    pub db_cache_hit_ratio: prometheus::Gauge,
    pub db_connections: IntGaugeVec,
    pub db_table_bytes: IntGaugeVec,
    pub db_dead_tuples: IntGaugeVec,
    pub db_replica_lag_bytes: IntGaugeVec,
    pub tenants: IntGauge,
    render_lock: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("onebase".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by method, route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method, route and status",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )?;
        let pool_size = IntGauge::new("db_pool_connections", "Open connections in the pool")?;
        let pool_max_size = IntGauge::new("db_pool_max_connections", "Configured maximum pool size")?;
        let pool_available = IntGauge::new("db_pool_available", "Idle connections ready for use")?;
        let pool_waiting = IntGauge::new("db_pool_waiting", "Requests waiting for a connection")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_max_size.clone()))?;
        registry.register(Box::new(pool_available.clone()))?;
        registry.register(Box::new(pool_waiting.clone()))?;
        let embed_queued = IntGauge::new("embed_queue_texts", "Texts waiting for an inference thread")?;
        let embed_queue_capacity = IntGauge::new(
            "embed_queue_capacity",
            "Most texts that may wait for the model; beyond it requests get 503",
        )?;
        let embed_texts = IntCounter::new("embed_texts_total", "Texts embedded")?;
        let embed_tokens = IntCounter::new("embed_tokens_total", "Tokens embedded (after truncation)")?;
        let embed_calls = IntCounter::new("embed_model_calls_total", "Calls into the embedding model")?;
        let embed_busy = Counter::new(
            "embed_busy_seconds_total",
            "Time the inference threads spent tokenizing and running the model",
        )?;
        registry.register(Box::new(embed_queued.clone()))?;
        registry.register(Box::new(embed_queue_capacity.clone()))?;
        registry.register(Box::new(embed_texts.clone()))?;
        registry.register(Box::new(embed_tokens.clone()))?;
        registry.register(Box::new(embed_calls.clone()))?;
        registry.register(Box::new(embed_busy.clone()))?;
        let query_cache_hits = IntCounter::new("query_cache_hits_total", "Search queries embedded from the cache")?;
        let query_cache_misses = IntCounter::new("query_cache_misses_total", "Search queries embedded by the model")?;
        registry.register(Box::new(query_cache_hits.clone()))?;
        registry.register(Box::new(query_cache_misses.clone()))?;
        let jobs = IntGaugeVec::new(Opts::new("jobs", "Jobs by kind and state"), &["kind", "state"])?;
        let job_units = IntCounterVec::new(
            Opts::new("job_units_total", "Records or chunks processed by jobs, by kind"),
            &["kind"],
        )?;
        let job_progress = GaugeVec::new(
            Opts::new(
                "job_progress_percent",
                "Progress of the least advanced running job of each kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(job_units.clone()))?;
        registry.register(Box::new(job_progress.clone()))?;
        let retention_deleted = IntCounterVec::new(
            Opts::new("retention_deleted_total", "Rows deleted by each retention rule"),
            &["rule"],
        )?;
        let retention_errors = IntCounterVec::new(
            Opts::new("retention_errors_total", "Sweeps in which a retention rule failed"),
            &["rule"],
        )?;
        for rule in crate::retention::RULES {
            retention_deleted.with_label_values(&[rule.name()]);
            retention_errors.with_label_values(&[rule.name()]);
        }
        let retention_last_run = IntGauge::new(
            "retention_last_run_timestamp_seconds",
            "When the retention sweep last ran (Unix seconds)",
        )?;
        registry.register(Box::new(retention_deleted.clone()))?;
        registry.register(Box::new(retention_errors.clone()))?;
        registry.register(Box::new(retention_last_run.clone()))?;
        let db_time = HistogramVec::new(
            HistogramOpts::new(
                "request_db_seconds",
                "Time a request spent holding database connections, per route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(db_time.clone()))?;
        let reads = IntCounterVec::new(
            Opts::new(
                "db_reads_total",
                "Read-only requests by the database they read: primary or replica",
            ),
            &["target"],
        )?;
        for target in ["primary", "replica"] {
            reads.with_label_values(&[target]);
        }
        registry.register(Box::new(reads.clone()))?;
        let replica_lag_seconds = GaugeVec::new(
            Opts::new(
                "replica_lag_seconds",
                "How far each read replica is behind the primary, as the read router measures it",
            ),
            &["replica"],
        )?;
        let replica_up = IntGaugeVec::new(
            Opts::new("replica_up", "Whether each read replica answers (1) or not (0)"),
            &["replica"],
        )?;
        registry.register(Box::new(replica_lag_seconds.clone()))?;
        registry.register(Box::new(replica_up.clone()))?;
        let db_bytes = IntGauge::new("db_size_bytes", "The database's size on disk")?;
        let db_cache_hit_ratio =
            prometheus::Gauge::new("db_cache_hit_ratio", "Share of block reads served from shared buffers")?;
        let db_connections = IntGaugeVec::new(
            Opts::new("db_connections", "The database's client connections by state"),
            &["state"],
        )?;
        let db_table_bytes = IntGaugeVec::new(
            Opts::new(
                "db_table_bytes",
                "Bytes of the shared tables (public schema) with their indexes",
            ),
            &["table"],
        )?;
        let db_dead_tuples = IntGaugeVec::new(
            Opts::new("db_dead_tuples", "Dead tuples of the shared tables, awaiting vacuum"),
            &["table"],
        )?;
        let db_replica_lag_bytes = IntGaugeVec::new(
            Opts::new(
                "db_replica_lag_bytes",
                "WAL bytes each streaming replica has not replayed",
            ),
            &["replica"],
        )?;
        let tenants = IntGauge::new("tenants", "Tenants")?;
        for gauge in [&db_bytes, &tenants] {
            registry.register(Box::new(gauge.clone()))?;
        }
        registry.register(Box::new(db_cache_hit_ratio.clone()))?;
        for gauge in [&db_connections, &db_table_bytes, &db_dead_tuples, &db_replica_lag_bytes] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_max_size,
            pool_available,
            pool_waiting,
            embed_queued,
            embed_queue_capacity,
            embed_texts,
            embed_tokens,
            embed_calls,
            embed_busy,
            query_cache_hits,
            query_cache_misses,
            jobs,
            job_units,
            job_progress,
            retention_deleted,
            retention_errors,
            retention_last_run,
            db_time,
            reads,
            replica_lag_seconds,
            replica_up,
            db_bytes,
            db_cache_hit_ratio,
            db_connections,
            db_table_bytes,
            db_dead_tuples,
            db_replica_lag_bytes,
            tenants,
            render_lock: std::sync::Mutex::new(()),
        })
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// Renders the text exposition format, refreshing the pool's and the embedder's figures first.
    pub fn render(&self, pool: &deadpool_postgres::Pool, embed: EmbedStatsSnapshot) -> anyhow::Result<String> {
        let status = pool.status();
        self.pool_size.set(status.size as i64);
        self.pool_max_size.set(status.max_size as i64);
        self.pool_available.set(status.available as i64);
        self.pool_waiting.set(status.waiting as i64);
        self.embed_queued.set(embed.queued_texts as i64);
        self.embed_queue_capacity.set(embed.queue_capacity as i64);
        // The embedder keeps its own monotonic totals and the counters catch up to them; the lock
        // keeps two concurrent scrapes from both adding the same difference.
        let _serialized = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        catch_up(&self.embed_texts, embed.texts);
        catch_up(&self.embed_tokens, embed.tokens);
        catch_up(&self.embed_calls, embed.model_calls);
        let busy = embed.busy_seconds - self.embed_busy.get();
        if busy > 0.0 {
            self.embed_busy.inc_by(busy);
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}

fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// A reading of the embedder's counters and queue (`Embedder::stats`), which [`Metrics::render`]
/// publishes. Declared here so that the registry needs nothing above it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmbedStatsSnapshot {
    /// Texts embedded since start.
    pub texts: u64,
    /// Tokens the model saw since start (after truncation, special tokens included).
    pub tokens: u64,
    /// ONNX Runtime calls (a batch is split into calls of similar length).
    pub model_calls: u64,
    /// Time spent tokenizing and in inference.
    pub busy_seconds: f64,
    /// Texts waiting for an inference thread right now.
    pub queued_texts: u64,
    /// Most texts that may wait; beyond it requests get 503.
    pub queue_capacity: u64,
}
