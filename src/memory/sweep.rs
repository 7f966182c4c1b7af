//! The memory plane's part of the periodic sweep: expired memories are purged (their deletion
//! recorded in the history), and conversations untouched for longer than their tenant's
//! `retention.conversations_days` setting are deleted with everything hanging off them.

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    pub memories: u64,
    pub conversations: u64,
}

pub async fn sweep(state: &AppState) -> Result<Swept, ApiError> {
    let client = state.pool.get().await?;
    let memories = client
        .execute(
            "WITH gone AS (DELETE FROM memories WHERE expires_at <= now() \
               RETURNING tenant_id, id, user_id, content, metadata) \
             INSERT INTO memory_history (tenant_id, memory_id, user_id, event, old_content, old_metadata, reason) \
             SELECT tenant_id, id, user_id, 'delete', content, metadata, 'expired' FROM gone",
            &[],
        )
        .await?;
    let conversations = client
        .execute(
            "DELETE FROM conversations c USING tenants t \
             WHERE t.id = c.tenant_id AND jsonb_typeof(t.settings #> '{retention,conversations_days}') = 'number' \
               AND (t.settings #>> '{retention,conversations_days}')::numeric > 0 \
               AND c.updated_at < now() - make_interval(secs => (t.settings #>> '{retention,conversations_days}')::float8 * 86400)",
            &[],
        )
        .await?;
    Ok(Swept { memories, conversations })
}
