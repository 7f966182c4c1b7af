//! Everything an application puts into an LLM prompt for one chat turn, in one round trip: the
//! conversation's last messages, the user's memories nearest the query, and the top chunks of
//! named collections. The query is embedded once, before the transaction; the three parts are
//! read in one REPEATABLE READ transaction, so they come from one snapshot.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::conversation_model::Message;
use super::conversations;
use super::memory_model::{MemoryHit, Scope};
use crate::db::tenant_scope;
use crate::error::ApiError;
use crate::filter::Filter;
use crate::http::body::integer;
use crate::knowledge::query_vector::QueryVector;
use crate::knowledge::search::search_in;
use crate::knowledge::search_model::{Hit, SearchRequest};
use crate::names::UserId;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextMemories {
    /// 1 to 100 (default 5).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    #[schema(minimum = -1, maximum = 1)]
    pub min_score: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextCollections {
    /// 1 to 16 collections of the tenant that embed their text.
    #[schema(min_items = 1, max_items = 16)]
    pub names: Vec<String>,
    /// Chunks per collection, 1 to 100 (default 5).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    /// A filter on the chunks' metadata.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "Can I get my money back for the broken blender?", "last_messages": 10,
    "memories": {"k": 5}, "collections": {"names": ["policies"], "k": 3}}))]
pub struct ContextRequest {
    /// The turn's question: 1 to 10000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub query: String,
    /// How many of the last messages, 0 to 500 (default 20).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0, maximum = 500)]
    pub last_messages: Option<i64>,
    /// The conversation's user's memories nearest the query (left out when absent).
    pub memories: Option<ContextMemories>,
    /// The top chunks of these collections (left out when absent).
    pub collections: Option<ContextCollections>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionHits {
    pub collection: String,
    pub hits: Vec<Hit>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Context {
    pub conversation_id: String,
    pub user_id: String,
    /// The last messages, ascending by seq.
    pub messages: Vec<Message>,
    /// Best first.
    pub memories: Vec<MemoryHit>,
    pub collections: Vec<CollectionHits>,
}

pub async fn context(state: &AppState, tenant: Uuid, id: &str, req: ContextRequest) -> Result<Context, ApiError> {
    conversations::check_id(id)?;
    if req.query.trim().is_empty() || req.query.chars().count() > 10_000 {
        return Err(ApiError::validation("query", "1 to 10000 characters, not blank"));
    }
    let last = req.last_messages.unwrap_or(20);
    if !(0..=500).contains(&last) {
        return Err(ApiError::validation("last_messages", "0 to 500"));
    }
    let memory_k = match &req.memories {
        Some(m) => {
            if m.min_score.is_some_and(|s| !(-1.0..=1.0).contains(&s)) {
                return Err(ApiError::validation("memories.min_score", "-1 to 1"));
            }
            Some(m.k.unwrap_or(5))
                .filter(|k| (1..=100).contains(k))
                .ok_or_else(|| ApiError::validation("memories.k", "1 to 100"))?
        }
        None => 0,
    };
    let mut filter = None;
    if let Some(c) = &req.collections {
        if c.names.is_empty() || c.names.len() > 16 {
            return Err(ApiError::validation("collections.names", "1 to 16 collections"));
        }
        for name in &c.names {
            crate::knowledge::model::validate_name("collections.names", name)?;
        }
        if !(1..=100).contains(&c.k.unwrap_or(5)) {
            return Err(ApiError::validation("collections.k", "1 to 100"));
        }
        filter = c
            .filter
            .as_ref()
            .map(|f| Filter::parse(f, "collections.filter"))
            .transpose()?;
    }
    // One embedding of the query serves the memories and every collection.
    let vector = state.embed_query(&req.query).await?;

    let mut client = state.read_conn(tenant).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(&tenant_scope(tenant)).await?;
    let conversation = conversations::load(&tx, id, false).await?;
    let messages = if last > 0 {
        super::messages::last_in(&tx, id, last).await?
    } else {
        vec![]
    };
    let memories = match &req.memories {
        Some(m) => {
            let scope = Scope {
                user_id: Some(UserId::parse(&conversation.user_id)?),
                agent_id: None,
                run_id: None,
            };
            super::memories::nearest(&tx, &scope, &vector, None, memory_k, m.min_score).await?
        }
        None => vec![],
    };
    let mut collections = vec![];
    if let Some(c) = &req.collections {
        for name in &c.names {
            let search = SearchRequest {
                query: Some(req.query.clone()),
                k: Some(c.k.unwrap_or(5) as u32),
                ..SearchRequest::default()
            };
            let query = QueryVector {
                vector: vector.clone(),
                embedded: true,
            };
            let found = search_in(&tx, tenant, name, &search, filter.as_ref(), Some(query)).await?;
            collections.push(CollectionHits {
                collection: name.clone(),
                hits: found.hits,
            });
        }
    }
    tx.commit().await?;
    Ok(Context {
        conversation_id: conversation.id,
        user_id: conversation.user_id,
        messages,
        memories,
        collections,
    })
}
