//! What a job is, as stored and as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `POST /v1/collections/{name}/import`.
    Import,
    /// Seals the open segment of an HNSW collection (fresh writes) and builds its index
    /// (queued by writes).
    Merge,
    /// `POST /v1/collections/{name}/reindex`.
    Reindex,
    /// `POST /v1/collections/{name}/reembed`.
    Reembed,
    /// The server's periodic clean-up (not shown to tenants).
    Sweep,
    /// Rebuilds a tier of a collection's sealed segments as one (queued by merges).
    Compact,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Import => "import",
            JobKind::Merge => "merge",
            JobKind::Reindex => "reindex",
            JobKind::Reembed => "reembed",
            JobKind::Sweep => "sweep",
            JobKind::Compact => "compact",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        Some(match s {
            "import" => JobKind::Import,
            "merge" => JobKind::Merge,
            "reindex" => JobKind::Reindex,
            "reembed" => JobKind::Reembed,
            "sweep" => JobKind::Sweep,
            "compact" => JobKind::Compact,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// An import whose body is still arriving.
    Receiving,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Receiving => "receiving",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "receiving" => JobState::Receiving,
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }
}

/// How far a job has come.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Progress {
    /// Units done: records for an import, chunks for a merge or re-embed.
    pub done: i64,
    /// Units in all, when known.
    pub total: Option<i64>,
    /// `done / total` in percent.
    pub percent: Option<f64>,
    /// Units per second since the job started.
    pub rows_per_second: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// The step the job is in (`load`, `index`, `fill`, `swap`...).
    pub phase: Option<String>,
    /// For a text import: records whose text was embedded. The others (`done - embedded`) had
    /// the same text stored already and only took the new metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded: Option<i64>,
}

/// A record a job could not take (an import line skipped under `on_error: skip`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordError {
    /// 1-based line of the NDJSON body.
    pub line: i64,
    pub id: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "kind": "import", "state": "running", "collection": "handbook",
    "progress": {"done": 25000, "total": 50000, "percent": 50.0, "rows_per_second": 12500.0, "eta_seconds": 2.0, "phase": "load"},
    "params": {"on_error": "abort", "records": 50000}, "errors": [], "error_count": 0, "error": null, "error_code": null,
    "cancel_requested": false, "attempts": 1, "created_at": "2026-11-23T10:00:00Z", "started_at": "2026-11-23T10:00:01Z",
    "finished_at": null, "heartbeat_at": "2026-11-23T10:00:03Z"
}))]
pub struct Job {
    pub id: Uuid,
    pub kind: JobKind,
    pub state: JobState,
    /// The collection the job works on.
    pub collection: Option<String>,
    pub progress: Progress,
    /// The job's parameters (an import's `on_error` and record count, a reindex's `index`...).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The first 100 records the job could not take.
    pub errors: Vec<RecordError>,
    /// How many records the job could not take in all.
    pub error_count: i64,
    /// Why the job failed.
    pub error: Option<String>,
    /// A stable code for `error`.
    pub error_code: Option<String>,
    /// A cancel was asked for; the job stops at its next checkpoint.
    pub cancel_requested: bool,
    /// Times a worker started it (more than 1 after a resume).
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker's last sign of life.
    pub heartbeat_at: Option<DateTime<Utc>>,
}

pub const COLUMNS: &str =
    "id, kind, state, collection_name, done, total, params, errors, error_count, error, error_code, \
    cancel_requested, attempts, created_at, started_at, finished_at, heartbeat_at, checkpoint, \
    extract(epoch FROM (coalesce(finished_at, now()) - started_at))::float8 AS elapsed_secs";

pub fn from_row(row: &tokio_postgres::Row) -> Result<Job, ApiError> {
    let corrupt = |what: &str| ApiError::Internal(anyhow::anyhow!("job row has a bad {what}"));
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let state = JobState::parse(&state).ok_or_else(|| corrupt("state"))?;
    let done: i64 = row.try_get("done")?;
    let total: Option<i64> = row.try_get("total")?;
    let errors: serde_json::Value = row.try_get("errors")?;
    let checkpoint: serde_json::Value = row.try_get("checkpoint")?;
    let elapsed: Option<f64> = row.try_get("elapsed_secs")?;
    let rate = elapsed.filter(|&s| s > 0.0 && done > 0).map(|s| done as f64 / s);
    let eta = match (rate, total) {
        (Some(r), Some(t)) if !state.is_finished() => Some(((t - done).max(0) as f64) / r),
        _ => None,
    };
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        state,
        collection: row.try_get("collection_name")?,
        progress: Progress {
            done,
            total,
            percent: total
                .filter(|&t| t > 0)
                .map(|t| (done as f64 * 100.0 / t as f64).min(100.0)),
            rows_per_second: rate,
            eta_seconds: eta,
            phase: checkpoint.get("phase").and_then(|p| p.as_str()).map(str::to_string),
            embedded: checkpoint.get("embedded").and_then(|n| n.as_i64()),
        },
        params: row.try_get("params")?,
        errors: serde_json::from_value(errors).map_err(|_| corrupt("errors"))?,
        error_count: row.try_get("error_count")?,
        error: row.try_get("error")?,
        error_code: row.try_get("error_code")?,
        cancel_requested: row.try_get("cancel_requested")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<JobKind>,
    /// Only jobs on this collection.
    #[param(min_length = 1, max_length = 63)]
    pub collection: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub data: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}
