//! Per-agent state and resumable workflow state of a conversation, with optimistic concurrency
//! (`If-Match: <version>`), and the erasure of everything a user has.

use actix_web::http::header::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::conversations::{self, check_id};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::names::{AgentName, UserId};
use crate::state::AppState;

/// The version an `If-Match` header asks for: `3`, `"3"` or `W/"3"`. None without the header.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::validation(
            "If-Match",
            "a version number, as the ETag of the state gives it (e.g. \"3\")",
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>().ok().filter(|v| *v >= 1).map(Some).ok_or_else(bad)
}

fn check_version(current: Option<i64>, wanted: Option<i64>, what: &str) -> Result<(), ApiError> {
    match (wanted, current) {
        (None, _) => Ok(()),
        (Some(w), Some(c)) if w == c => Ok(()),
        (Some(w), Some(c)) => Err(ApiError::VersionConflict(format!(
            "{what} is at version {c}, not {w}; read it again and retry"
        ))),
        (Some(w), None) => Err(ApiError::VersionConflict(format!(
            "{what} does not exist yet (If-Match asked for version {w})"
        ))),
    }
}

fn require_object(field: &'static str, value: &serde_json::Value) -> Result<(), ApiError> {
    if !value.is_object() {
        return Err(ApiError::validation(field, "must be a JSON object"));
    }
    if value.to_string().len() > 1024 * 1024 {
        return Err(ApiError::validation(field, "must be at most 1 MiB"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"state": {"pending_refund": 1182, "tone": "apologetic"}, "workflow_step": "await_confirmation"}))]
pub struct PutAgentState {
    /// A JSON object of at most 1 MiB.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    #[schema(max_length = 256)]
    pub workflow_step: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentState {
    pub conversation_id: String,
    pub agent_name: String,
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    pub workflow_step: Option<String>,
    /// 1, plus one per save; the `ETag` and what `If-Match` names.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A saved state and whether the save created it.
pub struct Saved<T> {
    pub value: T,
    pub created: bool,
}

pub async fn put_agent_state(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: &str,
    agent: &str,
    wanted: Option<i64>,
    req: PutAgentState,
) -> Result<Saved<AgentState>, ApiError> {
    check_id(id)?;
    AgentName::parse(agent)?;
    require_object("state", &req.state)?;
    if req.workflow_step.as_ref().is_some_and(|s| s.chars().count() > 256) {
        return Err(ApiError::validation("workflow_step", "at most 256 characters"));
    }
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    // The conversation's lock serializes saves of its states, so a version check holds.
    conversations::touch(&tx, id).await?;
    let current: Option<i64> = tx
        .query_opt(
            "SELECT version FROM agent_states WHERE conversation_id = $1 AND agent_name = $2",
            &[&id, &agent],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    check_version(current, wanted, &format!("the state of agent `{agent}`"))?;
    let row = tx
        .query_one(
            "INSERT INTO agent_states AS s (tenant_id, conversation_id, agent_name, state, workflow_step) \
             VALUES (onebase_current_tenant(), $1, $2, $3, $4) \
             ON CONFLICT (tenant_id, conversation_id, agent_name) DO UPDATE SET state = EXCLUDED.state, \
               workflow_step = EXCLUDED.workflow_step, version = s.version + 1, updated_at = now() \
             RETURNING version, created_at, updated_at",
            &[&id, &agent, &req.state, &req.workflow_step],
        )
        .await?;
    let saved = AgentState {
        conversation_id: id.to_string(),
        agent_name: agent.to_string(),
        state: req.state,
        workflow_step: req.workflow_step,
        version: row.try_get(0)?,
        created_at: row.try_get(1)?,
        updated_at: row.try_get(2)?,
    };
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("agent_state.put", "conversation", id)
            .details(serde_json::json!({"agent": agent, "version": saved.version})),
    )
    .await?;
    tx.commit().await?;
    Ok(Saved {
        value: saved,
        created: current.is_none(),
    })
}

pub async fn get_agent_state(state: &AppState, tenant: Uuid, id: &str, agent: &str) -> Result<AgentState, ApiError> {
    check_id(id)?;
    AgentName::parse(agent).map_err(|_| ApiError::NotFound {
        resource: "agent state",
        id: format!("{id}/{agent}"),
    })?;
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    conversations::load(&tx, id, false).await?;
    let row = tx
        .query_opt(
            "SELECT state, workflow_step, version, created_at, updated_at FROM agent_states \
             WHERE conversation_id = $1 AND agent_name = $2",
            &[&id, &agent],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "agent state",
            id: format!("{id}/{agent}"),
        })?;
    tx.commit().await?;
    Ok(AgentState {
        conversation_id: id.to_string(),
        agent_name: agent.to_string(),
        state: row.try_get(0)?,
        workflow_step: row.try_get(1)?,
        version: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"workflow_type": "refund", "current_step": "issue_credit", "state": {"order": 1182, "amount": "49.90"}}))]
pub struct PutWorkflow {
    #[schema(min_length = 1, max_length = 128)]
    pub workflow_type: String,
    #[schema(min_length = 1, max_length = 256)]
    pub current_step: String,
    /// A JSON object of at most 1 MiB.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Workflow {
    pub conversation_id: String,
    pub workflow_type: String,
    pub current_step: String,
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowStep {
    pub version: i64,
    pub workflow_type: String,
    pub current_step: String,
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    pub saved_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowHistory {
    /// Oldest first.
    pub data: Vec<WorkflowStep>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryPage {
    /// Saves after this version.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    crate::runs::model::check_name(field, value, max)
}

pub async fn put_workflow(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: &str,
    wanted: Option<i64>,
    req: PutWorkflow,
) -> Result<Saved<Workflow>, ApiError> {
    check_id(id)?;
    check_name("workflow_type", &req.workflow_type, 128)?;
    check_name("current_step", &req.current_step, 256)?;
    require_object("state", &req.state)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    conversations::touch(&tx, id).await?;
    let current: Option<i64> = tx
        .query_opt("SELECT version FROM workflows WHERE conversation_id = $1", &[&id])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    check_version(current, wanted, "the workflow")?;
    let row = tx
        .query_one(
            "INSERT INTO workflows AS w (tenant_id, conversation_id, workflow_type, current_step, state) \
             VALUES (onebase_current_tenant(), $1, $2, $3, $4) \
             ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET workflow_type = EXCLUDED.workflow_type, \
               current_step = EXCLUDED.current_step, state = EXCLUDED.state, version = w.version + 1, updated_at = now() \
             RETURNING version, created_at, updated_at",
            &[&id, &req.workflow_type, &req.current_step, &req.state],
        )
        .await?;
    let version: i64 = row.try_get(0)?;
    tx.execute(
        "INSERT INTO workflow_history (tenant_id, conversation_id, version, workflow_type, current_step, state) \
         VALUES (onebase_current_tenant(), $1, $2, $3, $4, $5)",
        &[&id, &version, &req.workflow_type, &req.current_step, &req.state],
    )
    .await?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("workflow.put", "conversation", id)
            .details(serde_json::json!({"version": version, "current_step": req.current_step})),
    )
    .await?;
    tx.commit().await?;
    Ok(Saved {
        value: Workflow {
            conversation_id: id.to_string(),
            workflow_type: req.workflow_type,
            current_step: req.current_step,
            state: req.state,
            version,
            created_at: row.try_get(1)?,
            updated_at: row.try_get(2)?,
        },
        created: current.is_none(),
    })
}

pub async fn get_workflow(state: &AppState, tenant: Uuid, id: &str) -> Result<Workflow, ApiError> {
    check_id(id)?;
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    conversations::load(&tx, id, false).await?;
    let row = tx
        .query_opt(
            "SELECT workflow_type, current_step, state, version, created_at, updated_at FROM workflows WHERE conversation_id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound { resource: "workflow of conversation", id: id.to_string() })?;
    tx.commit().await?;
    Ok(Workflow {
        conversation_id: id.to_string(),
        workflow_type: row.try_get(0)?,
        current_step: row.try_get(1)?,
        state: row.try_get(2)?,
        version: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}

pub async fn workflow_history(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    page: &HistoryPage,
) -> Result<WorkflowHistory, ApiError> {
    check_id(id)?;
    let limit = crate::http::pagination::Limit::parse(page.limit)?;
    if page.after.is_some_and(|a| a < 0) {
        return Err(ApiError::validation("after", "a version (0 or more)"));
    }
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    conversations::load(&tx, id, false).await?;
    let rows = tx
        .query(
            "SELECT version, workflow_type, current_step, state, saved_at FROM workflow_history \
             WHERE conversation_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            &[&id, &page.after.unwrap_or(0), &(limit.fetch() - 1)],
        )
        .await?;
    tx.commit().await?;
    let data = rows
        .iter()
        .map(|r| {
            Ok(WorkflowStep {
                version: r.try_get(0)?,
                workflow_type: r.try_get(1)?,
                current_step: r.try_get(2)?,
                state: r.try_get(3)?,
                saved_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(WorkflowHistory { data })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    pub user_id: String,
    pub conversations: i64,
    pub messages: i64,
    pub agent_states: i64,
    pub workflows: i64,
    pub workflow_history: i64,
    pub memories: i64,
    pub memory_history: i64,
}

/// Removes everything the tenant keeps of a user, in one transaction: conversations with their
/// messages (and vectors), agent states and workflows with their history, memories (and
/// vectors) with their history. The audit row has
/// the counts, not the content.
pub async fn erase_user(state: &AppState, tenant: Uuid, principal: &Principal, user: &str) -> Result<Erased, ApiError> {
    // An id that breaks the naming rules is no user's.
    UserId::parse(user).map_err(|_| ApiError::NotFound {
        resource: "user",
        id: user.to_string(),
    })?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_one(
            "WITH c AS (SELECT id FROM conversations WHERE user_id = $1 FOR UPDATE) SELECT \
               (SELECT count(*) FROM c), \
               (SELECT count(*) FROM messages WHERE conversation_id IN (SELECT id FROM c)), \
               (SELECT count(*) FROM agent_states WHERE conversation_id IN (SELECT id FROM c)), \
               (SELECT count(*) FROM workflows WHERE conversation_id IN (SELECT id FROM c)), \
               (SELECT count(*) FROM workflow_history WHERE conversation_id IN (SELECT id FROM c))",
            &[&user],
        )
        .await?;
    // The foreign keys cascade from the conversations to everything hanging off them.
    tx.execute("DELETE FROM conversations WHERE user_id = $1", &[&user])
        .await?;
    let memories = tx.execute("DELETE FROM memories WHERE user_id = $1", &[&user]).await? as i64;
    let memory_history = tx
        .execute("DELETE FROM memory_history WHERE user_id = $1", &[&user])
        .await? as i64;
    let erased = Erased {
        user_id: user.to_string(),
        conversations: row.try_get(0)?,
        messages: row.try_get(1)?,
        agent_states: row.try_get(2)?,
        workflows: row.try_get(3)?,
        workflow_history: row.try_get(4)?,
        memories,
        memory_history,
    };
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("user.erase", "user", user).details(serde_json::json!({
            "conversations": erased.conversations, "messages": erased.messages, "agent_states": erased.agent_states,
            "workflows": erased.workflows, "workflow_history": erased.workflow_history,
            "memories": erased.memories, "memory_history": erased.memory_history,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(erased)
}
