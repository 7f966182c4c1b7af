//! Messages: appended under the conversation's row lock, so `seq` follows commit order and a
//! reader paging by `seq` sees each message exactly once; embedded (when on) before the
//! transaction opens and written with their vectors; searched by meaning with an exact scan of
//! one conversation's or one user's messages (an index on those narrows the scan first, so a
//! search does not slow down as other users' messages grow).

use pgvector::Vector;
use tokio_postgres::Row;
use uuid::Uuid;

use super::conversation_model::{
    check_rating, validate_messages, AppendMessages, Message, MessageHit, MessageHits, MessageList, MessagePage,
    MessageRole, MessageSearch, UpdateMessage,
};
use super::conversations::{self, check_id};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::filter::{Columns, Filter, SqlParams};
use crate::knowledge::model::validate_metadata;
use crate::knowledge::search_model::SearchMode;
use crate::knowledge::search_scope::{
    scope_hits, scope_order, scope_text, scope_text_alone, ScopeRows, ScopeSearch, SCOPE_LANGUAGE,
};
use crate::state::AppState;

const COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.role, m.content, m.agent_name, m.metadata, m.token_count, \
    m.cost_usd::text AS cost_usd, m.rating, m.embedding IS NOT NULL AS embedded, m.created_at";

fn from_row(row: &Row) -> Result<Message, ApiError> {
    let role: String = row.try_get("role")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        role: MessageRole::parse(&role)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a message with role {role}")))?,
        content: row.try_get("content")?,
        agent_name: row.try_get("agent_name")?,
        metadata: row.try_get("metadata")?,
        token_count: row.try_get("token_count")?,
        cost_usd: row.try_get("cost_usd")?,
        rating: row.try_get("rating")?,
        embedded: row.try_get("embedded")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Whether a conversation's new messages are embedded: its own setting, else the tenant's.
async fn embedding_on(state: &AppState, tenant: Uuid, id: &str) -> Result<bool, ApiError> {
    check_id(id)?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            "SELECT coalesce(c.embed_messages, (SELECT (t.settings->>'embed_messages')::boolean FROM tenants t \
               WHERE t.id = c.tenant_id AND jsonb_typeof(t.settings->'embed_messages') = 'boolean'), false) \
             FROM conversations c WHERE c.id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| conversations::not_found(id))?;
    tx.commit().await?;
    Ok(row.try_get(0)?)
}

pub async fn append(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: &str,
    req: AppendMessages,
) -> Result<Vec<Message>, ApiError> {
    let messages = validate_messages(req.into_vec())?;
    let vectors: Vec<Option<Vector>> = if embedding_on(state, tenant, id).await? {
        let mut out = Vec::with_capacity(messages.len());
        for slice in messages.chunks(state.embed_limits.max_inputs.max(1)) {
            let embedded = state
                .embedder
                .embed(slice.iter().map(|m| m.content.clone()).collect())
                .await?;
            out.extend(embedded.vectors.into_iter().map(|v| Some(Vector::from(v))));
        }
        out
    } else {
        vec![None; messages.len()]
    };
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    // The conversation's row lock orders appends: seq numbers are handed out and committed in
    // the same order.
    let n = messages.len() as i64;
    let row = tx
        .query_opt(
            "UPDATE conversations SET last_seq = last_seq + $2, message_count = message_count + $2, updated_at = now() \
             WHERE id = $1 RETURNING last_seq - $2, user_id",
            &[&id, &n],
        )
        .await?
        .ok_or_else(|| conversations::not_found(id))?;
    let (first_seq, user_id): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
    let seqs: Vec<i64> = (1..=n).map(|i| first_seq + i).collect();
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let agents: Vec<Option<&str>> = messages.iter().map(|m| m.agent_name.as_deref()).collect();
    let metadata: Vec<&serde_json::Value> = messages.iter().map(|m| &m.metadata).collect();
    let tokens: Vec<Option<i32>> = messages.iter().map(|m| m.token_count).collect();
    let costs: Vec<Option<&str>> = messages.iter().map(|m| m.cost_usd.as_deref()).collect();
    let ratings: Vec<Option<i32>> = messages.iter().map(|m| m.rating).collect();
    let rows = tx
        .query(
            &format!(
                "INSERT INTO messages AS m (tenant_id, conversation_id, user_id, seq, role, content, agent_name, metadata, \
                   token_count, cost_usd, rating, embedding) \
                 SELECT onebase_current_tenant(), $1, $2, s, r, c, a, md, t, co::numeric, ra, e \
                 FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::int[], $9::text[], \
                   $10::int[], $11::vector[]) AS x(s, r, c, a, md, t, co, ra, e) \
                 RETURNING {COLUMNS}"
            ),
            &[&id, &user_id, &seqs, &roles, &contents, &agents, &metadata, &tokens, &costs, &ratings, &vectors],
        )
        .await?;
    let mut appended = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    appended.sort_by_key(|m| m.seq);
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("messages.append", "conversation", id)
            .details(serde_json::json!({"count": n, "first_seq": first_seq + 1})),
    )
    .await?;
    tx.commit().await?;
    Ok(appended)
}

pub async fn list(state: &AppState, tenant: Uuid, id: &str, page: &MessagePage) -> Result<MessageList, ApiError> {
    let limit = match page.limit.unwrap_or(50) {
        n @ 1..=500 => i64::from(n),
        _ => return Err(ApiError::validation("limit", "1 to 500")),
    };
    if page.before.is_some_and(|b| b < 0) || page.after.is_some_and(|a| a < 0) {
        return Err(ApiError::validation(
            "before",
            "`before` and `after` are message seq numbers (0 or more)",
        ));
    }
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    conversations::load(&tx, id, false).await?;
    // Forward from `after`; otherwise backward from `before` (or the end), then put in order.
    let forward = page.after.is_some();
    let sql = format!(
        "SELECT {COLUMNS} FROM messages m WHERE m.conversation_id = $1 \
           AND ($2::bigint IS NULL OR m.seq > $2) AND ($3::bigint IS NULL OR m.seq < $3) \
         ORDER BY m.seq {} LIMIT $4",
        if forward { "ASC" } else { "DESC" }
    );
    let rows = tx.query(&sql, &[&id, &page.after, &page.before, &(limit + 1)]).await?;
    tx.commit().await?;
    let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let has_more = data.len() as i64 > limit;
    data.truncate(limit as usize);
    if !forward {
        data.reverse();
    }
    Ok(MessageList { data, has_more })
}

/// The last `n` messages of a conversation in `tx`, ascending.
pub async fn last_in(tx: &deadpool_postgres::Transaction<'_>, id: &str, n: i64) -> Result<Vec<Message>, ApiError> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM messages m WHERE m.conversation_id = $1 ORDER BY m.seq DESC LIMIT $2"),
            &[&id, &n],
        )
        .await?;
    let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    data.reverse();
    Ok(data)
}

pub async fn update(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    id: &str,
    message: Uuid,
    req: UpdateMessage,
) -> Result<Message, ApiError> {
    check_id(id)?;
    let metadata = validate_metadata("metadata", req.metadata)?;
    let rating = req.rating.map(check_rating).transpose()?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE messages m SET metadata = coalesce($3, m.metadata), rating = coalesce($4, m.rating) \
                 WHERE m.conversation_id = $1 AND m.id = $2 RETURNING {COLUMNS}"
            ),
            &[&id, &message, &metadata, &rating],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "message",
            id: message.to_string(),
        })?;
    let updated = from_row(&row)?;
    audit::record(&tx, tenant, principal, Event::new("message.update", "message", message)).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Searches one conversation's messages (`conversation`) or, tenant-wide, one user's: by
/// meaning (exactly, over the scope's vectors), by words (BM25 over the scope), or both fused.
pub async fn search(
    state: &AppState,
    tenant: Uuid,
    conversation: Option<&str>,
    req: MessageSearch,
) -> Result<MessageHits, ApiError> {
    if req.query.trim().is_empty() || req.query.chars().count() > 10_000 {
        return Err(ApiError::validation("query", "1 to 10000 characters, not blank"));
    }
    let k = req.k.unwrap_or(10);
    if !(1..=100).contains(&k) {
        return Err(ApiError::validation("k", "1 to 100"));
    }
    if req.agent_name.as_ref().is_some_and(|a| a.chars().count() > 256) {
        return Err(ApiError::validation("agent_name", "at most 256 characters"));
    }
    let search = ScopeSearch::new(req.mode, &req.query, req.fusion.as_ref(), req.min_score, k)?;
    let mode = search.mode;
    match (conversation, &req.user_id) {
        (Some(id), None) => check_id(id)?,
        (None, Some(_)) => {}
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "user_id",
                "only for the tenant-wide search, POST /v1/messages/search",
            ))
        }
        (None, None) => {
            return Err(ApiError::validation(
                "user_id",
                "the tenant-wide search needs the user whose messages to search",
            ))
        }
    }
    let filter = req.filter.as_ref().map(|f| Filter::parse(f, "filter")).transpose()?;
    // The messages searched, whichever side searches them.
    let scope = |params: &mut SqlParams| {
        let mut conditions = vec![];
        match (conversation, &req.user_id) {
            (Some(id), _) => conditions.push(format!("m.conversation_id = {}", params.push(id.to_string()))),
            (None, Some(user)) => conditions.push(format!("m.user_id = {}", params.push(user.clone()))),
            (None, None) => {}
        }
        if let Some(role) = req.role {
            conditions.push(format!("m.role = {}", params.push(role.as_str())));
        }
        if let Some(agent) = &req.agent_name {
            conditions.push(format!("m.agent_name = {}", params.push(agent.clone())));
        }
        if let Some(since) = req.since {
            conditions.push(format!("m.created_at >= {}", params.push(since)));
        }
        if let Some(until) = req.until {
            conditions.push(format!("m.created_at < {}", params.push(until)));
        }
        if let Some(filter) = &filter {
            let cols = Columns {
                metadata: "m.metadata",
                id: "m.id::text",
                created_at: "m.created_at",
                updated_at: "m.created_at",
                text: "m.content",
                tsv: "m.tsv",
            };
            conditions.push(filter.to_sql(&cols, SCOPE_LANGUAGE, params));
        }
        conditions
    };
    let fetch = search.fetch;
    let rows = ScopeRows {
        from: "messages m",
        alias: "m",
        columns: COLUMNS,
        scope: &scope,
    };
    let main = async {
        // The query's vector before the transaction: the model never runs inside one.
        let vector = match mode {
            SearchMode::Text => None,
            SearchMode::Vector | SearchMode::Hybrid => Some(state.embed_query(&req.query).await?),
        };
        let mut client = state.read_conn(tenant).await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        if let Some(id) = conversation {
            conversations::load(&tx, id, false).await?;
        }
        let vector_rows = match vector {
            Some(vector) => {
                let mut params = SqlParams::new();
                let mut conditions = scope(&mut params);
                conditions.push("m.embedding IS NOT NULL".to_string());
                conditions.push(format!(
                    "vector_dims(m.embedding) = {}",
                    params.push(vector.len() as i32)
                ));
                let q = params.push(Vector::from(vector));
                if let (SearchMode::Vector, Some(min)) = (mode, req.min_score) {
                    conditions.push(format!("1 - (m.embedding <=> {q}) >= {}", params.push(min)));
                }
                let sql = format!(
                    "SELECT {COLUMNS}, 1 - (m.embedding <=> {q}) FROM messages m WHERE {} ORDER BY m.embedding <=> {q} LIMIT {}",
                    conditions.join(" AND "),
                    params.push(fetch)
                );
                Some(tx.query(&sql, &params.as_refs()).await?)
            }
            None => None,
        };
        // A text search alone runs here; hybrid's text half runs beside this, on its own
        // connection, while the model embeds the query and the vector half runs.
        let text = match mode {
            SearchMode::Text => scope_text(&tx, &search, &rows).await?,
            SearchMode::Vector | SearchMode::Hybrid => (None, None),
        };
        tx.commit().await?;
        Ok::<_, ApiError>((vector_rows, text))
    };
    let beside = async {
        match mode {
            SearchMode::Hybrid => scope_text_alone(state, tenant, &search, &rows).await,
            SearchMode::Vector | SearchMode::Text => Ok((None, None)),
        }
    };
    let ((vector_rows, text), beside) = tokio::try_join!(main, beside)?;
    let (text_rows, text_reason) = if mode == SearchMode::Hybrid { beside } else { text };
    // The score follows the columns.
    let read = |row: &Row| from_row(row).map(|m| (m.id, m));
    let (vector_hits, text_hits) = (scope_hits(vector_rows, 12, read)?, scope_hits(text_rows, 12, read)?);
    let data = scope_order(&search, vector_hits, text_hits)
        .into_iter()
        .map(|(message, score, scores)| MessageHit { message, score, scores })
        .collect();
    Ok(MessageHits { data, text_reason })
}
