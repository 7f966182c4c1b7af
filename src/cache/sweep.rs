//! The cache's part of retention (rule `cache_expired` of `ops::retention`): entries expired
//! for longer than their tenant's keep window go, with their indexed documents. It runs with the
//! server's own privileges across tenants, except where it removes indexed documents, which it
//! does in each tenant's own transaction. (Rule `cache_history` is a plain age rule.)

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::knowledge::index_text;
use crate::retention::BATCH;
use crate::state::AppState;

/// A tenant collection's due entries: namespaces, keys (paired), and the tenant's keep window.
type Due = (Vec<String>, Vec<String>, f64);

/// Removes the entries expired for longer than `keep_secs` (SQL over the tenant row `t`, with
/// the server's value `server_value` as `$1`), batch by batch; returns how many.
pub async fn expired(state: &AppState, keep_secs: &str, server_value: f64) -> Result<u64, ApiError> {
    let due = format!(
        "FROM cache_entries x JOIN tenants t ON t.id = x.tenant_id WHERE x.expires_at < now() - make_interval(secs => {keep_secs})"
    );
    let mut swept = 0;
    // Entries that are not indexed: a plain delete, batch by batch.
    loop {
        let client = state.pool.get().await?;
        let n = client
            .execute(
                &format!("DELETE FROM cache_entries WHERE ctid = ANY(ARRAY(SELECT x.ctid {due} AND x.index_target IS NULL LIMIT {BATCH}))"),
                &[&server_value],
            )
            .await?;
        swept += n;
        if n < BATCH as u64 {
            break;
        }
    }
    // Indexed entries: their documents go in the same transaction, per tenant and collection.
    loop {
        let client = state.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT tenant_id, index_target->>'collection', array_agg(namespace), array_agg(key), min(keep) FROM \
                       (SELECT x.tenant_id, x.index_target, x.namespace, x.key, {keep_secs} AS keep {due} \
                        AND x.index_target IS NOT NULL LIMIT {BATCH}) d \
                     GROUP BY 1, 2"
                ),
                &[&server_value],
            )
            .await?;
        drop(client);
        if rows.is_empty() {
            break;
        }
        let mut groups: BTreeMap<(Uuid, String), Due> = BTreeMap::new();
        for row in &rows {
            let (tenant, collection, namespaces, keys, keep): (Uuid, String, Vec<String>, Vec<String>, f64) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
            );
            groups.insert((tenant, collection), (namespaces, keys, keep));
        }
        let mut removed = 0;
        for ((tenant, collection), (namespaces, keys, keep)) in groups {
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
            swept += ids.len() as u64;
            removed += ids.len();
        }
        if removed == 0 {
            break;
        }
    }
    Ok(swept)
}
