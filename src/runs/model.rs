//! Runs' request and response shapes, and their validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::body::integer;
use crate::knowledge::index_text::IndexTarget;
use crate::knowledge::model::validate_metadata;

/// A run's lifecycle: queued -> running -> completed | failed | cancelled (a queued run may
/// also be cancelled before it starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }

    /// Whether a run in `self` may move to `next` (staying put is allowed).
    pub fn may_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        self == next
            || matches!(
                (self, next),
                (Queued, Running) | (Queued, Cancelled) | (Running, Completed | Failed | Cancelled)
            )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "actor": "tariff-agent",
    "request_payload": {"question": "What is the HS code for a laptop?", "country": "US"},
    "status": "queued",
    "autonomy_level": "supervised",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "metadata": {"team": "compliance"},
    "index": {"collection": "past-runs", "text_field": "question"}
}))]
pub struct CreateRun {
    /// The run's id; generated (a UUIDv7) when absent.
    pub id: Option<Uuid>,
    /// Who or what started the run (an agent, a user, a service): 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub actor: String,
    /// The request the run serves: any JSON value.
    pub request_payload: serde_json::Value,
    /// Default `queued`.
    pub status: Option<RunStatus>,
    /// A label (at most 64 characters) or a number, as the platform grades autonomy.
    #[schema(value_type = Option<String>, example = "supervised")]
    pub autonomy_level: Option<serde_json::Value>,
    /// A tracing id, unique per tenant: 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub trace_id: Option<String>,
    /// The same as the `Idempotency-Key` header: a retry with the same key and the same request
    /// returns the original run. 1 to 256 characters, unique per tenant.
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
    /// A JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Index the request payload's text into this collection (document id: the run id), in the
    /// run's transaction, so similar past runs are found with the collection's search.
    pub index: Option<IndexTarget>,
}

pub const MAX_NAME: usize = 256;

/// A required name-like string of 1 to `max` characters.
pub fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::validation(field, format!("1 to {max} characters")));
    }
    Ok(())
}

impl CreateRun {
    pub fn validate(&self) -> Result<(), ApiError> {
        check_name("actor", &self.actor, MAX_NAME)?;
        if let Some(t) = &self.trace_id {
            check_name("trace_id", t, MAX_NAME)?;
        }
        if let Some(k) = &self.idempotency_key {
            check_name("idempotency_key", k, MAX_NAME)?;
        }
        match &self.autonomy_level {
            None | Some(serde_json::Value::Number(_)) => {}
            Some(serde_json::Value::String(s)) if s.chars().count() <= 64 => {}
            Some(_) => {
                return Err(ApiError::validation(
                    "autonomy_level",
                    "a string of at most 64 characters or a number",
                ))
            }
        }
        validate_metadata("metadata", self.metadata.clone())?;
        if let Some(index) = &self.index {
            index.validate("index")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "completed"}))]
pub struct UpdateRun {
    pub status: Option<RunStatus>,
    /// When the run ended; only with a change to completed, failed or cancelled (default: now).
    pub completed_at: Option<DateTime<Utc>>,
    /// At most 10000 characters.
    #[schema(max_length = 10000)]
    pub error_message: Option<String>,
    /// Replaces the metadata: a JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

pub const MAX_MESSAGE: usize = 10_000;

pub fn check_message(field: &'static str, message: Option<&String>) -> Result<(), ApiError> {
    if message.is_some_and(|m| m.chars().count() > MAX_MESSAGE) {
        return Err(ApiError::validation(field, format!("at most {MAX_MESSAGE} characters")));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: Uuid,
    pub actor: String,
    pub status: RunStatus,
    pub request_payload: serde_json::Value,
    #[schema(value_type = Option<String>)]
    pub autonomy_level: Option<serde_json::Value>,
    pub trace_id: Option<String>,
    pub idempotency_key: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub error_message: Option<String>,
    /// The collection the request payload is indexed in (document id: the run id).
    pub indexed_in: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The run's artifacts (on `GET /v1/runs/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Artifact>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<Run>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RunFilter {
    /// Only this actor's runs.
    #[param(min_length = 1, max_length = 256)]
    pub actor: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs created at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Runs created before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// What a step is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "step_number": 1, "node_name": "classify", "input_data": {"text": "laptop"},
    "output_data": {"hs_code": "8471.30"}, "status": "completed",
    "started_at": "2026-11-23T10:00:00Z", "completed_at": "2026-11-23T10:00:02Z"
}))]
pub struct CreateStep {
    /// The step's position in the run, unique within it (0 or more).
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub step_number: i64,
    /// 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub node_name: String,
    pub input_data: Option<serde_json::Value>,
    pub output_data: Option<serde_json::Value>,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// An LLM call of the same run.
    pub llm_call_id: Option<Uuid>,
    #[schema(max_length = 10000)]
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    pub id: Uuid,
    pub run_id: Uuid,
    pub step_number: i32,
    pub node_name: String,
    pub input_data: Option<serde_json::Value>,
    pub output_data: Option<serde_json::Value>,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub llm_call_id: Option<Uuid>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepList {
    /// Ordered by `step_number`.
    pub data: Vec<Step>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"artifact_type": "report", "url": "s3://reports/run-42.pdf", "metadata": {"pages": 3}}))]
pub struct CreateArtifact {
    /// 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub artifact_type: String,
    /// 1 to 2048 characters.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Artifact {
    pub id: Uuid,
    pub run_id: Uuid,
    pub artifact_type: String,
    pub url: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactList {
    /// Oldest first.
    pub data: Vec<Artifact>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 812, "completion_tokens": 64,
    "cost_usd": "0.000160", "latency_ms": 930
}))]
pub struct CreateLlmCall {
    /// A step of the same run.
    pub step_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 256)]
    pub model: String,
    #[schema(min_length = 1, max_length = 128)]
    pub provider: String,
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0)]
    pub prompt_tokens: i64,
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0)]
    pub completion_tokens: i64,
    /// Default: prompt_tokens + completion_tokens.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0)]
    pub total_tokens: Option<i64>,
    /// US dollars as a decimal string (never a float): up to 18 digits before the point and 12
    /// after, e.g. "0.000160".
    #[schema(value_type = String, pattern = r"^[0-9]{1,18}(\.[0-9]{1,12})?$", example = "0.000160")]
    pub cost_usd: serde_json::Value,
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0)]
    pub latency_ms: i64,
}

/// `cost_usd` as the decimal text PostgreSQL's NUMERIC takes, or why not.
pub fn parse_cost(value: &serde_json::Value) -> Result<String, ApiError> {
    let bad = || {
        ApiError::validation("cost_usd", "a decimal string such as \"0.000160\" (not a JSON number): up to 18 digits, a point and up to 12 decimals, not negative")
    };
    let text = value.as_str().ok_or_else(bad)?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    let valid =
        !whole.is_empty() && digits(whole, 18) && digits(fraction, 12) && (fraction.is_empty() != text.contains('.'));
    valid.then(|| text.to_string()).ok_or_else(bad)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LlmCall {
    pub id: Uuid,
    pub run_id: Uuid,
    pub step_id: Option<Uuid>,
    pub model: String,
    pub provider: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// US dollars, exact (a decimal string).
    #[schema(example = "0.000160")]
    pub cost_usd: String,
    pub latency_ms: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LlmCallList {
    /// Oldest first.
    pub data: Vec<LlmCall>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunStats {
    pub run_id: Uuid,
    pub step_count: i64,
    pub llm_calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// The exact sum of the calls' costs (a decimal string).
    #[schema(example = "0.004210")]
    pub total_cost_usd: String,
    /// From `started_at` (or `created_at`) to `completed_at` (or now, for a run still going).
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageGroup {
    #[default]
    Model,
    Provider,
    Actor,
    /// The UTC day of the call, as YYYY-MM-DD.
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageParams {
    /// What to group by (default `model`).
    pub group_by: Option<UsageGroup>,
    /// Calls made at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Calls made before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// The model, provider, actor or day (YYYY-MM-DD, UTC).
    pub key: String,
    pub llm_calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Exact (a decimal string).
    pub cost_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub llm_calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub group_by: UsageGroup,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// By cost, highest first (by day: oldest first).
    pub data: Vec<UsageRow>,
    pub total: UsageTotals,
}

pub fn run_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        resource: "run",
        id: id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn costs_are_decimal_strings() {
        for ok in ["0", "0.000160", "12.5", "123456789012345678.123456789012"] {
            assert_eq!(parse_cost(&json!(ok)).unwrap(), ok);
        }
        for bad in [
            json!(0.5),
            json!("-1"),
            json!("1e-3"),
            json!("1."),
            json!(".5"),
            json!("abc"),
            json!(""),
            json!("0.1234567890123"),
        ] {
            assert!(parse_cost(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use RunStatus::*;
        assert!(Queued.may_become(Running) && Running.may_become(Completed) && Queued.may_become(Cancelled));
        assert!(!Completed.may_become(Running) && !Queued.may_become(Completed) && !Failed.may_become(Cancelled));
        assert!(Running.may_become(Running));
    }
}
