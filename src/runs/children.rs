//! What a run records as it goes: steps, artifacts and LLM calls. Each is written in a
//! transaction that first checks the run is the tenant's (and keeps it from being deleted
//! meanwhile); the foreign keys keep a step's LLM call and a call's step within the same run.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::run_not_found;
use super::model::{
    check_message, check_name, parse_cost, Artifact, CreateArtifact, CreateLlmCall, CreateStep, LlmCall, Step,
    StepStatus,
};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::{is_fk_violation, is_unique_violation, ApiError};
use crate::knowledge::model::validate_metadata;
use crate::state::AppState;

const STEP_COLUMNS: &str = "id, run_id, step_number, node_name, input_data, output_data, status, started_at, \
    completed_at, llm_call_id, error_message, created_at";
const ARTIFACT_COLUMNS: &str = "id, run_id, artifact_type, url, metadata, created_at";
const CALL_COLUMNS: &str = "id, run_id, step_id, model, provider, prompt_tokens, completion_tokens, total_tokens, \
    cost_usd::text AS cost_usd, latency_ms, created_at";

fn step_from_row(row: &Row) -> Result<Step, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(Step {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        step_number: row.try_get("step_number")?,
        node_name: row.try_get("node_name")?,
        input_data: row.try_get("input_data")?,
        output_data: row.try_get("output_data")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a step with status {status}")))?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        llm_call_id: row.try_get("llm_call_id")?,
        error_message: row.try_get("error_message")?,
        created_at: row.try_get("created_at")?,
    })
}

fn artifact_from_row(row: &Row) -> Result<Artifact, ApiError> {
    Ok(Artifact {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        artifact_type: row.try_get("artifact_type")?,
        url: row.try_get("url")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
    })
}

fn call_from_row(row: &Row) -> Result<LlmCall, ApiError> {
    Ok(LlmCall {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        model: row.try_get("model")?,
        provider: row.try_get("provider")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        total_tokens: row.try_get("total_tokens")?,
        cost_usd: row.try_get("cost_usd")?,
        latency_ms: row.try_get("latency_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A tenant transaction in which the run exists (and cannot be deleted until it ends).
async fn run_tx<'a>(
    client: &'a mut deadpool_postgres::Object,
    tenant: Uuid,
    run_id: Uuid,
) -> Result<Transaction<'a>, ApiError> {
    let tx = tenant_tx(client, tenant).await?;
    require(&tx, run_id).await?;
    Ok(tx)
}

/// Records what was added to the run and commits.
async fn commit_child(
    tx: Transaction<'_>,
    tenant: Uuid,
    principal: &Principal,
    action: &str,
    run_id: Uuid,
    id: Uuid,
) -> Result<(), ApiError> {
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new(action, "run", run_id).details(serde_json::json!({"id": id})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn add_step(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    run_id: Uuid,
    req: CreateStep,
) -> Result<Step, ApiError> {
    let step_number = i32::try_from(req.step_number)
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::validation("step_number", "an integer from 0 to 2147483647"))?;
    check_name("node_name", &req.node_name, 256)?;
    check_message("error_message", req.error_message.as_ref())?;
    let mut client = state.pool.get().await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let result = tx
                .query_one(
                    &format!(
                        "INSERT INTO run_steps (tenant_id, run_id, step_number, node_name, input_data, output_data, status, \
                           started_at, completed_at, llm_call_id, error_message) \
                         VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {STEP_COLUMNS}"
                    ),
                    &[
                        &run_id,
                        &step_number,
                        &req.node_name,
                        &req.input_data,
                        &req.output_data,
                        &req.status.as_str(),
                        &req.started_at,
                        &req.completed_at,
                        &req.llm_call_id,
                        &req.error_message,
                    ],
                )
                .await;
    let step = match result {
        Ok(row) => step_from_row(&row)?,
        Err(err) if is_unique_violation(&err, "run_steps_step_number_key") => {
            return Err(ApiError::Conflict(format!(
                "run {run_id} has a step {step_number} already"
            )))
        }
        Err(err) if is_fk_violation(&err, "run_steps_llm_call_fkey") => {
            return Err(ApiError::validation(
                "llm_call_id",
                format!(
                    "run {run_id} has no LLM call {}",
                    req.llm_call_id.map(|i| i.to_string()).unwrap_or_default()
                ),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    commit_child(tx, tenant, principal, "run.step", run_id, step.id).await?;
    Ok(step)
}

pub async fn steps(state: &AppState, tenant: Uuid, run_id: Uuid) -> Result<Vec<Step>, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let rows = tx
        .query(
            &format!("SELECT {STEP_COLUMNS} FROM run_steps WHERE run_id = $1 ORDER BY step_number"),
            &[&run_id],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(step_from_row).collect()
}

pub async fn add_artifact(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    run_id: Uuid,
    req: CreateArtifact,
) -> Result<Artifact, ApiError> {
    check_name("artifact_type", &req.artifact_type, 128)?;
    check_name("url", &req.url, 2048)?;
    let metadata = validate_metadata("metadata", req.metadata)?.unwrap_or_else(|| serde_json::json!({}));
    let mut client = state.pool.get().await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO run_artifacts (tenant_id, run_id, artifact_type, url, metadata) \
                         VALUES (onebase_current_tenant(), $1, $2, $3, $4) RETURNING {ARTIFACT_COLUMNS}"
            ),
            &[&run_id, &req.artifact_type, &req.url, &metadata],
        )
        .await?;
    let artifact = artifact_from_row(&row)?;
    commit_child(tx, tenant, principal, "run.artifact", run_id, artifact.id).await?;
    Ok(artifact)
}

/// A run's artifacts, oldest first, in `tx`.
pub async fn artifacts(tx: &Transaction<'_>, run_id: Uuid) -> Result<Vec<Artifact>, ApiError> {
    let rows = tx
        .query(
            &format!("SELECT {ARTIFACT_COLUMNS} FROM run_artifacts WHERE run_id = $1 ORDER BY created_at, id"),
            &[&run_id],
        )
        .await?;
    rows.iter().map(artifact_from_row).collect()
}

pub async fn list_artifacts(state: &AppState, tenant: Uuid, run_id: Uuid) -> Result<Vec<Artifact>, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let data = artifacts(&tx, run_id).await?;
    tx.commit().await?;
    Ok(data)
}

pub async fn add_llm_call(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    run_id: Uuid,
    req: CreateLlmCall,
) -> Result<LlmCall, ApiError> {
    check_name("model", &req.model, 256)?;
    check_name("provider", &req.provider, 128)?;
    for (field, value) in [
        ("prompt_tokens", Some(req.prompt_tokens)),
        ("completion_tokens", Some(req.completion_tokens)),
        ("total_tokens", req.total_tokens),
        ("latency_ms", Some(req.latency_ms)),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::validation(field, "may not be negative"));
        }
    }
    let total = match req.total_tokens {
        Some(t) => t,
        None => req
            .prompt_tokens
            .checked_add(req.completion_tokens)
            .ok_or_else(|| ApiError::validation("total_tokens", "prompt_tokens + completion_tokens overflows"))?,
    };
    let cost = parse_cost(&req.cost_usd)?;
    let mut client = state.pool.get().await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let result = tx
        .query_one(
            &format!(
                "INSERT INTO llm_calls (tenant_id, run_id, step_id, actor, model, provider, prompt_tokens, \
                           completion_tokens, total_tokens, cost_usd, latency_ms) \
                         SELECT onebase_current_tenant(), $1, $2, r.actor, $3, $4, $5, $6, $7, $8::text::numeric, $9 \
                         FROM runs r WHERE r.id = $1 RETURNING {CALL_COLUMNS}"
            ),
            &[
                &run_id,
                &req.step_id,
                &req.model,
                &req.provider,
                &req.prompt_tokens,
                &req.completion_tokens,
                &total,
                &cost,
                &req.latency_ms,
            ],
        )
        .await;
    let call = match result {
        Ok(row) => call_from_row(&row)?,
        Err(err) if is_fk_violation(&err, "llm_calls_step_fkey") => {
            return Err(ApiError::validation(
                "step_id",
                format!(
                    "run {run_id} has no step {}",
                    req.step_id.map(|i| i.to_string()).unwrap_or_default()
                ),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    commit_child(tx, tenant, principal, "run.llm_call", run_id, call.id).await?;
    Ok(call)
}

pub async fn llm_calls(state: &AppState, tenant: Uuid, run_id: Uuid) -> Result<Vec<LlmCall>, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = run_tx(&mut client, tenant, run_id).await?;
    let rows = tx
        .query(
            &format!("SELECT {CALL_COLUMNS} FROM llm_calls WHERE run_id = $1 ORDER BY created_at, id"),
            &[&run_id],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(call_from_row).collect()
}

/// Checks that the run exists (and keeps it from being deleted until `tx` ends).
async fn require(tx: &Transaction<'_>, id: Uuid) -> Result<(), ApiError> {
    tx.query_opt("SELECT 1 FROM runs WHERE id = $1 FOR KEY SHARE", &[&id])
        .await?
        .map(|_| ())
        .ok_or_else(|| run_not_found(id))
}
