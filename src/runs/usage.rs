//! What runs cost: one run's totals, and the tenant's usage grouped by model, provider, actor or
//! day. Sums are computed by PostgreSQL over NUMERIC, so costs stay exact.

use uuid::Uuid;

use super::model::run_not_found;
use super::model::{RunStats, UsageGroup, UsageParams, UsageReport, UsageRow, UsageTotals};
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn run_stats(state: &AppState, tenant: Uuid, id: Uuid) -> Result<RunStats, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            "SELECT r.id, (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id), c.calls, c.prompt, c.completion, \
               c.total, c.cost::text, \
               extract(epoch FROM coalesce(r.completed_at, now()) - coalesce(r.started_at, r.created_at))::float8 \
             FROM runs r, LATERAL (SELECT count(*) AS calls, coalesce(sum(prompt_tokens), 0)::bigint AS prompt, \
               coalesce(sum(completion_tokens), 0)::bigint AS completion, coalesce(sum(total_tokens), 0)::bigint AS total, \
               coalesce(sum(cost_usd), 0) AS cost FROM llm_calls l WHERE l.run_id = r.id) c \
             WHERE r.id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| run_not_found(id))?;
    tx.commit().await?;
    Ok(RunStats {
        run_id: row.try_get(0)?,
        step_count: row.try_get(1)?,
        llm_calls: row.try_get(2)?,
        prompt_tokens: row.try_get(3)?,
        completion_tokens: row.try_get(4)?,
        total_tokens: row.try_get(5)?,
        total_cost_usd: row.try_get(6)?,
        duration_seconds: row.try_get::<_, f64>(7)?.max(0.0),
    })
}

pub async fn usage(state: &AppState, tenant: Uuid, params: &UsageParams) -> Result<UsageReport, ApiError> {
    let group_by = params.group_by.unwrap_or_default();
    let (key, order) = match group_by {
        UsageGroup::Model => ("c.model", "cost DESC, key"),
        UsageGroup::Provider => ("c.provider", "cost DESC, key"),
        UsageGroup::Actor => ("c.actor", "cost DESC, key"),
        // Grouped by the day's timestamp; formatted once per group, not once per row.
        UsageGroup::Day => ("(c.created_at AT TIME ZONE 'UTC')::date", "key"),
    };
    let label = if group_by == UsageGroup::Day {
        "to_char(key, 'YYYY-MM-DD')"
    } else {
        "key"
    };
    // The groups (a plain GROUP BY, which PostgreSQL can split across parallel workers, unlike
    // grouping sets) and, over those few rows, the totals.
    let sql = format!(
        "SELECT {label}, calls, prompt, completion, total, cost::text, sum(calls) OVER ()::bigint, \
           sum(prompt) OVER ()::bigint, sum(completion) OVER ()::bigint, sum(total) OVER ()::bigint, \
           sum(cost) OVER ()::text \
         FROM (SELECT {key} AS key, count(*) AS calls, sum(c.prompt_tokens)::bigint AS prompt, \
                 sum(c.completion_tokens)::bigint AS completion, sum(c.total_tokens)::bigint AS total, sum(c.cost_usd) AS cost \
               FROM llm_calls c \
               WHERE ($1::timestamptz IS NULL OR c.created_at >= $1) AND ($2::timestamptz IS NULL OR c.created_at < $2) \
               GROUP BY 1) g \
         ORDER BY {order}"
    );
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx.query(&sql, &[&params.since, &params.until]).await?;
    tx.commit().await?;
    let mut data = Vec::with_capacity(rows.len());
    let mut total = UsageTotals {
        llm_calls: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cost_usd: "0".into(),
    };
    for row in &rows {
        data.push(UsageRow {
            key: row.try_get(0)?,
            llm_calls: row.try_get(1)?,
            prompt_tokens: row.try_get(2)?,
            completion_tokens: row.try_get(3)?,
            total_tokens: row.try_get(4)?,
            cost_usd: row.try_get(5)?,
        });
        total = UsageTotals {
            llm_calls: row.try_get(6)?,
            prompt_tokens: row.try_get(7)?,
            completion_tokens: row.try_get(8)?,
            total_tokens: row.try_get(9)?,
            cost_usd: row.try_get(10)?,
        };
    }
    Ok(UsageReport {
        group_by,
        since: params.since,
        until: params.until,
        data,
        total,
    })
}
