//! The retention sweep: every rule of [`crate::retention`] applied by the one periodic sweep (a
//! `sweep` job on the jobs machinery), deleting in bounded batches so that no statement holds
//! many row locks for long, and counting what it deleted for the job's record, the log and
//! `/metrics`.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::jobs::{JobCtx, Outcome};
pub use crate::retention::{validate_tenant_settings, Retention, Rule, BATCH, RULES};
use crate::state::AppState;

/// Conversations one statement deletes at most (each takes its messages and states with it).
const CONVERSATION_BATCH: i64 = 200;
/// Finished sweep runs kept whatever their age (`GET /v1/admin/retention` shows the last).
const KEEP_SWEEP_RUNS: i64 = 100;

/// The rule's value for the tenant row `t` in seconds; where the tenant sets none, the
/// server's, given as `$1` in the rule's unit.
fn effective_secs(rule: Rule) -> String {
    let key = rule.tenant_key().unwrap_or("none");
    let scale = rule.unit().1;
    format!(
        "(CASE WHEN jsonb_typeof(t.settings #> '{{retention,{key}}}') = 'number' \
         THEN (t.settings #>> '{{retention,{key}}}')::float8 ELSE $1 END * {scale})"
    )
}

/// The server's value in seconds, as the first parameter of a rule's statements.
fn server_secs(rule: Rule, r: &Retention) -> f64 {
    rule.server_value(r) * rule.unit().1
}

/// Runs `sql` until it deletes fewer than `batch` rows; each run is its own statement.
async fn batched(
    state: &AppState,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    batch: i64,
) -> Result<u64, ApiError> {
    let mut total = 0;
    loop {
        let client = state.pool.get().await?;
        let n = client.execute(sql, params).await?;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

/// Deletes the rows of a tenant table whose `column` is older than the tenant's value of `rule`
/// (a value of 0 keeps them), in batches.
async fn by_age(
    state: &AppState,
    rule: Rule,
    table: &str,
    column: &str,
    extra: &str,
    batch: i64,
) -> Result<u64, ApiError> {
    let secs = effective_secs(rule);
    let sql = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM {table} x LEFT JOIN tenants t ON t.id = x.tenant_id \
           WHERE {secs} > 0 AND x.{column} < now() - make_interval(secs => {secs}) {extra} LIMIT {batch}))"
    );
    batched(state, &sql, &[&rule.server_value(&state.jobs.retention)], batch).await
}

async fn apply(state: &AppState, rule: Rule) -> Result<u64, ApiError> {
    let r = state.jobs.retention;
    match rule {
        Rule::AuditLog => {
            let tenants = by_age(state, rule, "audit_log", "created_at", "", BATCH).await?;
            let admin = batched(
                state,
                &format!(
                    "DELETE FROM admin_audit_log WHERE ctid = ANY(ARRAY(SELECT ctid FROM admin_audit_log \
                       WHERE $1::float8 > 0 AND created_at < now() - make_interval(secs => $1::float8) LIMIT {BATCH}))"
                ),
                &[&server_secs(rule, &r)],
                BATCH,
            )
            .await?;
            Ok(tenants + admin)
        }
        Rule::CacheExpired => crate::cache::sweep::expired(state, &effective_secs(rule), rule.server_value(&r)).await,
        Rule::CacheHistory => by_age(state, rule, "cache_history", "replaced_at", "", BATCH).await,
        Rule::MemoriesExpired => crate::memory::sweep::expired_memories(state, BATCH).await,
        Rule::Conversations => by_age(state, rule, "conversations", "updated_at", "", CONVERSATION_BATCH).await,
        Rule::JobsFinished => {
            let old = by_age(
                state,
                rule,
                "jobs",
                "finished_at",
                "AND x.state IN ('completed', 'failed', 'cancelled')",
                BATCH,
            )
            .await?;
            let client = state.pool.get().await?;
            let runs = client
                .execute(
                    "DELETE FROM jobs WHERE kind = 'sweep' AND state IN ('completed', 'failed', 'cancelled') AND id NOT IN \
                       (SELECT id FROM jobs WHERE kind = 'sweep' AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT $1)",
                    &[&KEEP_SWEEP_RUNS],
                )
                .await?;
            Ok(old + runs)
        }
    }
}

/// What one sweep did: rows deleted per rule, and the rules that failed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SweepReport {
    /// Rows deleted per rule.
    pub deleted: BTreeMap<String, u64>,
    /// The rules that failed, with the error (the others still ran).
    pub errors: BTreeMap<String, String>,
    pub duration_ms: u64,
}

/// Applies every rule once; a rule that fails does not stop the others.
pub async fn sweep(state: &AppState) -> SweepReport {
    let started = std::time::Instant::now();
    let mut report = SweepReport::default();
    for rule in RULES {
        match apply(state, rule).await {
            Ok(n) => {
                state
                    .metrics
                    .retention_deleted
                    .with_label_values(&[rule.name()])
                    .inc_by(n);
                report.deleted.insert(rule.name().into(), n);
            }
            Err(err) => {
                let message = match &err {
                    ApiError::Internal(e) => format!("{e:#}"),
                    other => other.to_string(),
                };
                tracing::warn!(rule = rule.name(), error = %message, "retention rule failed");
                state.metrics.retention_errors.with_label_values(&[rule.name()]).inc();
                report.errors.insert(rule.name().into(), message);
            }
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    state.metrics.retention_last_run.set(chrono::Utc::now().timestamp());
    tracing::info!(deleted = ?report.deleted, errors = report.errors.len(), duration_ms = report.duration_ms, "retention sweep");
    report
}

/// A tenant that sets its own value for a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOverride {
    pub tenant_id: uuid::Uuid,
    pub tenant: String,
    /// In the rule's unit.
    pub value: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRule {
    /// The rule's name (the `rule` label of `onebase_retention_deleted_total`).
    #[schema(example = "audit_log")]
    pub rule: &'static str,
    /// What it deletes.
    pub deletes: &'static str,
    /// `days` or `seconds`.
    pub unit: &'static str,
    /// The server-wide value (a flag), in `unit`.
    pub server_value: f64,
    pub zero_means: &'static str,
    /// The tenant setting that overrides it (`settings.retention.<key>`); none for rules without
    /// a value.
    pub tenant_setting: Option<String>,
    /// The tenants that override it (at most 1,000 listed).
    pub tenant_overrides: Vec<TenantOverride>,
    /// Rows it deleted in the last sweep.
    pub last_deleted: Option<u64>,
}

/// The last sweep: when, how long, and what each rule deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastSweep {
    pub job_id: uuid::Uuid,
    /// `completed`, or `failed` when a rule failed (the others still ran).
    pub state: String,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "sweep_interval_secs": 60.0, "batch_rows": 5000,
    "rules": [{"rule": "audit_log", "deletes": "audit log rows (the tenant's and the admin's) older than this",
               "unit": "days", "server_value": 90.0, "zero_means": "kept forever",
               "tenant_setting": "retention.audit_log_days",
               "tenant_overrides": [{"tenant_id": "0b6e3f5c-4a34-4c6f-9d8e-2f1d1c3b9a10", "tenant": "acme", "value": 365.0}],
               "last_deleted": 12}],
    "last_run": {"job_id": "019a9e3c-7d2a-7c1e-9f00-3b1f2a4c5d6e", "state": "completed",
                 "started_at": "2026-11-23T10:00:00Z", "finished_at": "2026-11-23T10:00:00.120Z",
                 "report": {"deleted": {"audit_log": 12, "cache_expired": 0}, "errors": {}, "duration_ms": 118, "staging_dropped": 0}}
}))]
pub struct RetentionView {
    /// Seconds between sweeps (`--sweep-interval-secs`).
    pub sweep_interval_secs: f64,
    /// Rows one delete statement removes at most.
    pub batch_rows: i64,
    pub rules: Vec<RetentionRule>,
    /// The last finished sweep (none yet after a first start).
    pub last_run: Option<LastSweep>,
}

/// The rules, their values and overrides, and the last sweep (admin).
pub async fn view(state: &AppState) -> Result<RetentionView, ApiError> {
    let client = state.pool.get().await?;
    let tenants = client
        .query(
            "SELECT id, name, settings->'retention' FROM tenants WHERE jsonb_typeof(settings->'retention') = 'object' ORDER BY name LIMIT 1000",
            &[],
        )
        .await?;
    let last = client
        .query_opt(
            "SELECT id, state, started_at, finished_at, checkpoint FROM jobs WHERE kind = 'sweep' \
             AND state IN ('completed', 'failed', 'cancelled') ORDER BY finished_at DESC LIMIT 1",
            &[],
        )
        .await?;
    let last_run = match last {
        None => None,
        Some(row) => Some(LastSweep {
            job_id: row.try_get(0)?,
            state: row.try_get(1)?,
            started_at: row.try_get(2)?,
            finished_at: row.try_get(3)?,
            report: row.try_get(4)?,
        }),
    };
    let retention = state.jobs.retention;
    let mut rules = Vec::new();
    for rule in RULES {
        let mut tenant_overrides = Vec::new();
        if let Some(key) = rule.tenant_key() {
            for row in &tenants {
                let settings: serde_json::Value = row.try_get(2)?;
                if let Some(value) = settings.get(key).and_then(|v| v.as_f64()) {
                    tenant_overrides.push(TenantOverride {
                        tenant_id: row.try_get(0)?,
                        tenant: row.try_get(1)?,
                        value,
                    });
                }
            }
        }
        rules.push(RetentionRule {
            rule: rule.name(),
            deletes: rule.description(),
            unit: rule.unit().0,
            server_value: rule.server_value(&retention),
            zero_means: rule.zero_means(),
            tenant_setting: rule.tenant_key().map(|k| format!("retention.{k}")),
            tenant_overrides,
            last_deleted: last_run
                .as_ref()
                .and_then(|l| l.report["deleted"][rule.name()].as_u64()),
        });
    }
    Ok(RetentionView {
        sweep_interval_secs: state.jobs.sweep_interval_secs,
        batch_rows: BATCH,
        rules,
        last_run,
    })
}

/// The periodic sweep, as a job: drops the staging tables of imports that ended without dropping them,
/// then applies every retention rule (`ops::retention`) and records what each deleted in the
/// job's checkpoint (`GET /v1/admin/retention` shows the last run).
pub async fn run_job(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let client = ctx.state.pool.get().await?;
    let orphans = client
        .query(
            "SELECT j.params FROM jobs j WHERE j.kind = 'import' AND j.state IN ('completed', 'failed', 'cancelled') \
             AND j.params ? 'staging' AND to_regclass(j.params->>'staging') IS NOT NULL",
            &[],
        )
        .await?;
    drop(client);
    for row in &orphans {
        crate::knowledge::import::drop_staging(&ctx.state, &row.try_get(0)?).await?;
    }
    let report = sweep(&ctx.state).await;
    let record = serde_json::json!({"deleted": report.deleted, "errors": report.errors,
        "duration_ms": report.duration_ms, "staging_dropped": orphans.len()});
    let client = ctx.state.pool.get().await?;
    client
        .execute("UPDATE jobs SET checkpoint = $2 WHERE id = $1", &[&ctx.job.id, &record])
        .await?;
    match report.errors.iter().next() {
        None => Ok(Outcome::Completed),
        Some((rule, err)) => Err(ApiError::Internal(anyhow::anyhow!(
            "{} of {} retention rules failed; {rule}: {err}",
            report.errors.len(),
            RULES.len()
        ))),
    }
}
