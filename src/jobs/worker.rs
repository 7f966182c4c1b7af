//! The workers: each claims a job, runs it with a heartbeat beside it, and records how it ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;

use super::model::JobState;
use super::store::{self, Claim, Claimed};
use crate::error::ApiError;
use crate::state::AppState;

/// How often an idle worker looks for work (a job queued by this server wakes it at once).
const POLL: Duration = Duration::from_millis(500);

/// A running job, as its code sees it.
pub struct JobCtx {
    pub state: web::Data<AppState>,
    pub job: Claimed,
    cancel: Arc<AtomicBool>,
}

/// The work of each job kind. The planes supply it and the composition root wires it
/// (`startup`): the machinery claims, heartbeats, cancels and records a job without knowing
/// what an import or a merge is.
pub trait JobKinds: Send + Sync + 'static {
    /// Runs a claimed job of any kind to its end or its next cancel check.
    fn run<'a>(&'a self, ctx: &'a JobCtx) -> BoxFuture<'a, Result<Outcome, ApiError>>;
    /// Cleans up after a job whose caller went away before it could start (an import whose
    /// upload was interrupted: what it staged).
    fn abandoned<'a>(
        &'a self,
        state: &'a AppState,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// How a job's code ended.
pub enum Outcome {
    Completed,
    /// Stopped at a checkpoint because a cancel was asked for; the data is consistent.
    Cancelled,
}

impl JobCtx {
    /// True once a cancel was asked for (seen by the heartbeat).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Records the checkpoint and progress in `tx`, the transaction of the work they cover, and
    /// learns of a cancel at once.
    pub async fn checkpoint(
        &self,
        tx: &Transaction<'_>,
        checkpoint: &serde_json::Value,
        done: i64,
    ) -> Result<(), ApiError> {
        if store::checkpoint(tx, self.job.id, checkpoint, done).await? {
            self.cancel.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts units for `/metrics` (after their transaction committed).
    pub fn count(&self, units: u64) {
        self.state
            .metrics
            .job_units
            .with_label_values(&[self.job.kind.as_str()])
            .inc_by(units);
    }

    pub fn tenant(&self) -> Result<uuid::Uuid, ApiError> {
        self.job
            .tenant
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a collection job without a tenant")))
    }
}

/// Starts `n` workers and the supervisor that refreshes the jobs' gauges and keeps the periodic
/// sweep scheduled.
pub fn spawn(state: web::Data<AppState>, kinds: Arc<dyn JobKinds>, n: usize) {
    if n == 0 {
        return;
    }
    let worker_base = format!("{}-{}", hostname(), std::process::id());
    for i in 0..n {
        let (state, kinds) = (state.clone(), kinds.clone());
        let name = format!("{worker_base}-{i}");
        tokio::spawn(async move { run_worker(state, kinds, name).await });
    }
    tokio::spawn(async move { supervise(state).await });
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "onebase".into())
}

async fn run_worker(state: web::Data<AppState>, kinds: Arc<dyn JobKinds>, name: String) {
    loop {
        match store::claim(&state.pool, &name, state.jobs.stale_secs).await {
            Ok(Some(Claim::Run(job))) => run_one(&state, &*kinds, &name, job).await,
            Ok(Some(Claim::Abandoned { id, params })) => {
                tracing::warn!(job = %id, "an import's upload was interrupted; dropping what it staged");
                if let Err(err) = kinds.abandoned(&state, &params).await {
                    tracing::warn!(job = %id, error = %err, "dropping an abandoned import's staging table");
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(POLL, state.jobs.wake.notified()).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming a job");
                tokio::time::sleep(POLL * 4).await;
            }
        }
    }
}

async fn run_one(state: &web::Data<AppState>, kinds: &dyn JobKinds, worker: &str, job: Claimed) {
    let id = job.id;
    let kind = job.kind;
    tracing::info!(job = %id, kind = kind.as_str(), attempt = job.attempts, "job started");
    let cancel = Arc::new(AtomicBool::new(false));
    let beat = {
        let (state, cancel, worker) = (state.clone(), cancel.clone(), worker.to_string());
        let every = Duration::from_secs_f64((state.jobs.stale_secs / 3.0).max(0.2));
        tokio::spawn(async move {
            loop {
                match store::heartbeat(&state.pool, id, &worker).await {
                    Ok(true) => cancel.store(true, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(job = %id, error = %err, "job heartbeat"),
                }
                tokio::time::sleep(every).await;
            }
        })
    };
    let ctx = JobCtx {
        state: state.clone(),
        job,
        cancel,
    };
    let result = kinds.run(&ctx).await;
    beat.abort();
    let (end, error) = match &result {
        Ok(Outcome::Completed) => (JobState::Completed, None),
        Ok(Outcome::Cancelled) => (JobState::Cancelled, None),
        Err(err) => {
            let message = match err {
                ApiError::Internal(e) => format!("{e:#}"),
                other => other.to_string(),
            };
            (JobState::Failed, Some((err.code(), message)))
        }
    };
    match &error {
        None => tracing::info!(job = %id, kind = kind.as_str(), state = end.as_str(), "job ended"),
        Some((code, message)) => tracing::warn!(job = %id, kind = kind.as_str(), code, message, "job failed"),
    }
    let finished = async {
        let client = state.pool.get().await?;
        store::finish(&*client, id, end, error.as_ref().map(|(c, m)| (*c, m.as_str()))).await
    };
    if let Err(err) = finished.await {
        // The job stays `running`; its heartbeat stops, and another worker resumes it.
        tracing::warn!(job = %id, error = %err, "recording a job's end");
    }
}

/// Every few seconds: the jobs' gauges, and the periodic sweep kept queued.
async fn supervise(state: web::Data<AppState>) {
    loop {
        if let Err(err) = refresh(&state).await {
            tracing::debug!(error = %err, "refreshing job metrics");
        }
        tokio::time::sleep(Duration::from_secs_f64(state.jobs.sweep_interval_secs.clamp(0.2, 5.0))).await;
    }
}

async fn refresh(state: &web::Data<AppState>) -> Result<(), ApiError> {
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO jobs (kind, run_after) VALUES ('sweep', now() + make_interval(secs => $1)) \
             ON CONFLICT (collection_id, kind) WHERE state = 'queued' AND kind IN ('merge', 'sweep', 'compact') DO NOTHING",
            &[&state.jobs.sweep_interval_secs],
        )
        .await?;
    drop(client);
    let metrics = &state.metrics;
    metrics.jobs.reset();
    for (kind, st, n) in store::counts(&state.pool).await? {
        metrics.jobs.with_label_values(&[&kind, &st]).set(n);
    }
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT kind, min(100.0 * done / total)::float8 FROM jobs WHERE state = 'running' AND total > 0 GROUP BY kind",
            &[],
        )
        .await?;
    metrics.job_progress.reset();
    for row in rows {
        let (kind, pct): (String, Option<f64>) = (row.try_get(0)?, row.try_get(1)?);
        metrics.job_progress.with_label_values(&[&kind]).set(pct.unwrap_or(0.0));
    }
    Ok(())
}
