//! The memory plane's part of retention (rule `memories_expired` of `ops::retention`): expired
//! memories are purged, their deletion recorded in the history with the reason `expired`.
//! (Conversations untouched for too long are a plain age rule there.)

use crate::error::ApiError;
use crate::state::AppState;

/// Deletes the memories past their `expires_at`, `batch` per statement; returns how many.
pub async fn expired_memories(state: &AppState, batch: i64) -> Result<u64, ApiError> {
    let mut total = 0;
    loop {
        let client = state.pool.get().await?;
        let n = client
            .execute(
                "WITH gone AS (DELETE FROM memories WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM memories WHERE expires_at <= now() LIMIT $1)) \
                   RETURNING tenant_id, id, user_id, content, metadata) \
                 INSERT INTO memory_history (tenant_id, memory_id, user_id, event, old_content, old_metadata, reason) \
                 SELECT tenant_id, id, user_id, 'delete', content, metadata, 'expired' FROM gone",
                &[&batch],
            )
            .await?;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}
