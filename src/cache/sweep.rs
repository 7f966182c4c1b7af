//! The cache's part of the periodic sweep (a `sweep` job on the jobs machinery): expired
//! entries past their keep window go, with their indexed documents, and so do versions older
//! than the history retention. It runs with the server's own privileges across tenants, except
//! where it removes indexed documents, which it does in each tenant's own transaction.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::jobs::Retention;
use crate::knowledge::index_text;
use crate::state::AppState;

/// Entries removed per statement, so one sweep never holds a huge transaction.
const BATCH: i64 = 5_000;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    pub entries: u64,
    pub history: u64,
}

pub async fn sweep(state: &AppState, retention: Retention) -> Result<Swept, ApiError> {
    let keep = retention.cache_keep_expired_secs as f64;
    let mut swept = Swept::default();
    // Entries that are not indexed: a plain delete, batch by batch.
    loop {
        let client = state.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM cache_entries WHERE ctid = ANY(ARRAY(SELECT ctid FROM cache_entries \
                   WHERE expires_at < now() - make_interval(secs => $1) AND index_target IS NULL LIMIT $2))",
                &[&keep, &BATCH],
            )
            .await?;
        swept.entries += n;
        if n < BATCH as u64 {
            break;
        }
    }
    // Indexed entries: their documents go in the same transaction, per tenant and collection.
    loop {
        let client = state.pool.get().await?;
        let rows = client
            .query(
                "SELECT tenant_id, index_target->>'collection', array_agg(namespace), array_agg(key) FROM \
                   (SELECT tenant_id, index_target, namespace, key FROM cache_entries \
                    WHERE expires_at < now() - make_interval(secs => $1) AND index_target IS NOT NULL LIMIT $2) due \
                 GROUP BY 1, 2",
                &[&keep, &BATCH],
            )
            .await?;
        drop(client);
        if rows.is_empty() {
            break;
        }
        let mut groups: BTreeMap<(Uuid, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
        for row in &rows {
            let (tenant, collection, namespaces, keys): (Uuid, String, Vec<String>, Vec<String>) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            groups.insert((tenant, collection), (namespaces, keys));
        }
        let mut removed = 0;
        for ((tenant, collection), (namespaces, keys)) in groups {
            let mut client = state.pool.get().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            // Re-checked under the tenant: an entry stored again meanwhile is no longer due.
            let gone = tx
                .query(
                    "DELETE FROM cache_entries e USING unnest($1::text[], $2::text[]) AS d(namespace, key) \
                     WHERE e.namespace = d.namespace AND e.key = d.key \
                       AND e.expires_at < now() - make_interval(secs => $3) RETURNING e.namespace, e.key",
                    &[&namespaces, &keys, &keep],
                )
                .await?;
            let ids = gone
                .iter()
                .map(|r| Ok(format!("{}:{}", r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            index_text::unindex_many(&tx, tenant, &collection, &ids).await?;
            tx.commit().await?;
            swept.entries += ids.len() as u64;
            removed += ids.len();
        }
        if removed == 0 {
            break;
        }
    }
    loop {
        let client = state.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM cache_history WHERE ctid = ANY(ARRAY(SELECT ctid FROM cache_history \
                   WHERE replaced_at < now() - make_interval(days => $1) LIMIT $2))",
                &[&(retention.cache_history_days as i32), &BATCH],
            )
            .await?;
        swept.history += n;
        if n < BATCH as u64 {
            break;
        }
    }
    state.metrics.swept.with_label_values(&["entries"]).inc_by(swept.entries);
    state.metrics.swept.with_label_values(&["history"]).inc_by(swept.history);
    Ok(swept)
}
