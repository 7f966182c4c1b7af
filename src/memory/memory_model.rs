//! Long-term memories' request and response shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::body::integer;
use crate::knowledge::search_model::{Fusion, Scores, SearchMode, TextReason};
use crate::names::{AgentId, RunRef, UserId};

/// Characters of a memory.
pub const MAX_MEMORY: usize = 10_000;

/// Who a memory is about or for: at least one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub run_id: Option<RunRef>,
}

impl Scope {
    pub fn new(user_id: Option<UserId>, agent_id: Option<AgentId>, run_id: Option<RunRef>) -> Result<Scope, ApiError> {
        if user_id.is_none() && agent_id.is_none() && run_id.is_none() {
            return Err(ApiError::validation(
                "user_id",
                "a memory needs a scope: at least one of user_id, agent_id, run_id",
            ));
        }
        Ok(Scope {
            user_id,
            agent_id,
            run_id,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"content": "Prefers window seats and vegetarian meals", "user_id": "user-7",
    "metadata": {"category": "travel"}, "ttl_seconds": 31536000}))]
pub struct AddMemory {
    /// 1 to 10000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub content: String,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub run_id: Option<RunRef>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// When the memory stops being returned (and is purged by the sweep).
    pub expires_at: Option<DateTime<Utc>>,
    /// Or: seconds from now, 1 to 315360000.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 315360000)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"content": "Prefers aisle seats and vegetarian meals"}))]
pub struct UpdateMemory {
    /// New content (embedded again).
    #[schema(min_length = 1, max_length = 10000)]
    pub content: Option<String>,
    /// Replaces the metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 315360000)]
    pub ttl_seconds: Option<i64>,
}

/// The expiry a request asks for: `expires_at`, or `ttl_seconds` from now (not both).
pub fn expiry(expires_at: Option<DateTime<Utc>>, ttl_seconds: Option<i64>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match (expires_at, ttl_seconds) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "ttl_seconds",
            "give expires_at or ttl_seconds, not both",
        )),
        (Some(at), None) if at <= Utc::now() => Err(ApiError::validation("expires_at", "is not in the future")),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(ttl)) if (1..=315_360_000).contains(&ttl) => Ok(Some(Utc::now() + chrono::Duration::seconds(ttl))),
        (None, Some(_)) => Err(ApiError::validation("ttl_seconds", "1 to 315360000")),
        (None, None) => Ok(None),
    }
}

pub fn check_content(content: &str) -> Result<(), ApiError> {
    if content.trim().is_empty() || content.chars().count() > MAX_MEMORY {
        return Err(ApiError::validation(
            "content",
            format!("1 to {MAX_MEMORY} characters, not blank"),
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Memory {
    pub id: Uuid,
    pub content: String,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryEvent {
    /// A new memory.
    Added,
    /// A near-duplicate in the scope was updated with this content.
    Updated,
    /// The same content was there already.
    Unchanged,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryWrite {
    pub event: MemoryEvent,
    pub memory: Memory,
    /// On `updated`: the content the memory had.
    pub previous_content: Option<String>,
    /// On `updated` by similarity: how close the old content was (cosine).
    pub similarity: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryList {
    /// Newest first.
    pub data: Vec<Memory>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MemoryFilter {
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub run_id: Option<RunRef>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "what does the user like to eat on flights", "user_id": "user-7", "k": 5}))]
pub struct MemorySearch {
    /// 1 to 10000 characters. By meaning (`mode: vector`, the default), by words (`text`: BM25
    /// over the scope's memories, words lowercased and none dropped or stemmed; `"quoted
    /// phrases"` required, `-words` excluded), or both (`hybrid`).
    #[schema(min_length = 1, max_length = 10000)]
    pub query: String,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub run_id: Option<RunRef>,
    /// A filter on the memories' metadata (the collections' filter language).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// 1 to 100 (default 10).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    /// Leave out memories scoring below this: the cosine similarity (-1 to 1) in `vector` mode,
    /// the BM25 score in `text` mode, the fused score in `hybrid` mode.
    pub min_score: Option<f64>,
    /// Default `vector`.
    pub mode: Option<SearchMode>,
    /// How `hybrid` fuses its two lists (as in the collections' search; default weighted 0.7
    /// vector / 0.3 text).
    pub fusion: Option<Fusion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryHit {
    pub memory: Memory,
    /// The memory's score: its cosine similarity to the query (`vector`), its BM25 score
    /// (`text`), or the two fused (`hybrid`).
    pub score: f64,
    /// Each side's score (`vector`: cosine similarity, `distance`: cosine distance, `text`: BM25),
    /// null on the side that did not find the memory.
    pub scores: Scores,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryHits {
    /// Best first.
    pub data: Vec<MemoryHit>,
    /// Why a `text` or `hybrid` search's text side found nothing: `no_words` (the query has no
    /// word), `no_match` (no memory in the scope holds one). Null otherwise.
    pub text_reason: Option<TextReason>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryChange {
    pub event: String,
    pub old_content: Option<String>,
    pub new_content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub old_metadata: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub new_metadata: Option<serde_json::Value>,
    /// Why: `request`, `duplicate`, `similar`, `expired`, `erased`.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryHistory {
    /// Oldest first.
    pub data: Vec<MemoryChange>,
}
