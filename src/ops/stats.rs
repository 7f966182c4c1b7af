//! Storage figures: a tenant's (`GET /v1/stats`) and the whole database's for the admin
//! (`GET /v1/admin/stats`), plus the Prometheus gauges refreshed from the latter.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::{system_tx, tenant_tx};
use crate::error::ApiError;
use crate::knowledge::ddl::Tables;
use crate::state::AppState;

/// The tenant tables shared by every tenant, reported by `GET /v1/stats`.
pub const TENANT_TABLES: [&str; 14] = [
    "conversations",
    "messages",
    "agent_states",
    "workflows",
    "workflow_history",
    "memories",
    "memory_history",
    "runs",
    "run_steps",
    "run_artifacts",
    "llm_calls",
    "cache_entries",
    "cache_history",
    "audit_log",
];

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionStats {
    pub name: String,
    pub documents: i64,
    pub chunks: i64,
    /// Bytes of the collection's tables (rows, TOAST), without indexes.
    pub table_bytes: i64,
    /// Bytes of its indexes (the vector index, full text, keys).
    pub index_bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableStats {
    /// The tenant's rows.
    pub rows: i64,
    /// Their share of the table's bytes on disk (rows times the table's average row size; exact
    /// for a table never analyzed).
    pub bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "tenant_id": "019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
    "collections": [{"name": "handbook", "documents": 1200, "chunks": 5400, "table_bytes": 11534336, "index_bytes": 9437184}],
    "tables": {"conversations": {"rows": 40, "bytes": 8192}, "messages": {"rows": 1800, "bytes": 950272}},
    "total_bytes": 21929984
}))]
pub struct TenantStats {
    pub tenant_id: Uuid,
    pub collections: Vec<CollectionStats>,
    /// The tenant's rows and bytes in each shared table (conversations, messages, memories,
    /// runs, cache entries, audit log...).
    pub tables: BTreeMap<String, TableStats>,
    /// Collections' tables and indexes plus the tenant's share of the shared tables.
    pub total_bytes: i64,
}

/// The tenant's figures, read inside its row-level-security scope.
pub async fn tenant(state: &AppState, tenant: Uuid) -> Result<TenantStats, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            "SELECT id, name, document_count, chunk_count FROM collections ORDER BY name",
            &[],
        )
        .await?;
    let mut collections = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get(0)?;
        let tables = Tables::new(tenant, id);
        let (table_bytes, index_bytes) = crate::knowledge::collections::disk_bytes(&tx, &tables).await?;
        collections.push(CollectionStats {
            name: row.try_get(1)?,
            documents: row.try_get(2)?,
            chunks: row.try_get(3)?,
            table_bytes,
            index_bytes,
        });
    }
    let mut tables = BTreeMap::new();
    for table in TENANT_TABLES {
        let row = tx
            .query_one(
                &format!(
                    "SELECT count(t.tenant_id)::int8, CASE WHEN c.reltuples > 0 THEN (count(t.tenant_id) * pg_table_size(c.oid) / c.reltuples)::int8 \
                            ELSE coalesce(sum(pg_column_size(t.*)), 0)::int8 END \
                     FROM pg_class c LEFT JOIN {table} t ON true WHERE c.oid = '{table}'::regclass GROUP BY c.oid, c.reltuples"
                ),
                &[],
            )
            .await?;
        tables.insert(
            table.to_string(),
            TableStats {
                rows: row.try_get(0)?,
                bytes: row.try_get(1)?,
            },
        );
    }
    tx.commit().await?;
    let total_bytes = collections.iter().map(|c| c.table_bytes + c.index_bytes).sum::<i64>()
        + tables.values().map(|t| t.bytes).sum::<i64>();
    Ok(TenantStats {
        tenant_id: tenant,
        collections,
        tables,
        total_bytes,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DbTable {
    /// `schema.table`.
    pub name: String,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replica {
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    /// Bytes of WAL the replica has not replayed yet.
    pub replay_lag_bytes: Option<i64>,
    /// Seconds its replay is behind (PostgreSQL's `replay_lag`).
    pub replay_lag_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "database": "onebase", "database_bytes": 734003200, "cache_hit_ratio": 0.998,
    "connections": {"active": 2, "idle": 9}, "max_connections": 200, "tenants": 3,
    "tables": [{"name": "public.messages", "table_bytes": 94371840, "index_bytes": 31457280, "live_tuples": 200000,
        "dead_tuples": 120, "last_vacuum": null, "last_autovacuum": "2026-11-23T09:12:00Z", "last_analyze": null,
        "last_autoanalyze": "2026-11-23T09:12:01Z"}],
    "replicas": [{"application_name": "replica1", "client_addr": "10.0.0.7", "state": "streaming",
        "replay_lag_bytes": 0, "replay_lag_seconds": 0.001}]
}))]
pub struct DatabaseStats {
    pub database: String,
    pub database_bytes: i64,
    /// Share of block reads served from shared buffers since the statistics were reset.
    pub cache_hit_ratio: Option<f64>,
    /// This database's connections by state (`active`, `idle`, `idle in transaction`...).
    pub connections: BTreeMap<String, i64>,
    pub max_connections: i64,
    pub tenants: i64,
    /// The largest tables (up to 100), biggest first.
    pub tables: Vec<DbTable>,
    /// Streaming replicas attached to this server.
    pub replicas: Vec<Replica>,
}

/// The whole database's figures (admin).
pub async fn database(state: &AppState) -> Result<DatabaseStats, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = system_tx(&mut client).await?;
    let head = tx
        .query_one(
            "SELECT current_database()::text, pg_database_size(current_database())::int8, \
                    (SELECT CASE WHEN blks_hit + blks_read > 0 THEN blks_hit::float8 / (blks_hit + blks_read) END \
                       FROM pg_stat_database WHERE datname = current_database()), \
                    current_setting('max_connections')::int8, (SELECT count(*) FROM tenants)::int8",
            &[],
        )
        .await?;
    let connections = tx
        .query(
            "SELECT coalesce(state, 'unknown'), count(*)::int8 FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' GROUP BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, ApiError>>()?;
    let tables = tx
        .query(
            "SELECT schemaname || '.' || relname, pg_table_size(relid)::int8, pg_indexes_size(relid)::int8, n_live_tup, n_dead_tup, \
                    last_vacuum, last_autovacuum, last_analyze, last_autoanalyze \
             FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC, 1 LIMIT 100",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(DbTable {
                name: r.try_get(0)?,
                table_bytes: r.try_get(1)?,
                index_bytes: r.try_get(2)?,
                live_tuples: r.try_get(3)?,
                dead_tuples: r.try_get(4)?,
                last_vacuum: r.try_get(5)?,
                last_autovacuum: r.try_get(6)?,
                last_analyze: r.try_get(7)?,
                last_autoanalyze: r.try_get(8)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let replicas = tx
        .query(
            "SELECT application_name, client_addr::text, coalesce(state, ''), \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8, extract(epoch FROM replay_lag)::float8 \
             FROM pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Replica {
                application_name: r.try_get(0)?,
                client_addr: r.try_get(1)?,
                state: r.try_get(2)?,
                replay_lag_bytes: r.try_get(3)?,
                replay_lag_seconds: r.try_get(4)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    tx.commit().await?;
    Ok(DatabaseStats {
        database: head.try_get(0)?,
        database_bytes: head.try_get(1)?,
        cache_hit_ratio: head.try_get(2)?,
        max_connections: head.try_get(3)?,
        tenants: head.try_get(4)?,
        connections,
        tables,
        replicas,
    })
}

/// Refreshes the database gauges of `/metrics` from [`database`] every `interval` (a scrape only
/// reads them: the size functions walk every table's files).
pub fn spawn_gauges(state: actix_web::web::Data<AppState>, interval: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            match database(&state).await {
                Ok(stats) => set_gauges(&state.metrics, &stats),
                Err(err) => tracing::debug!(error = %err, "refreshing the database gauges"),
            }
            tokio::time::sleep(interval).await;
        }
    });
}

fn set_gauges(m: &crate::metrics::Metrics, stats: &DatabaseStats) {
    m.db_bytes.set(stats.database_bytes);
    m.db_cache_hit_ratio.set(stats.cache_hit_ratio.unwrap_or(0.0));
    m.tenants.set(stats.tenants);
    m.db_connections.reset();
    for (state, n) in &stats.connections {
        m.db_connections.with_label_values(&[state]).set(*n);
    }
    m.db_table_bytes.reset();
    m.db_dead_tuples.reset();
    // The shared tables only: a collection's tables (one schema per tenant) would make a label
    // per collection.
    for t in stats.tables.iter().filter(|t| t.name.starts_with("public.")) {
        let name = &t.name["public.".len()..];
        m.db_table_bytes
            .with_label_values(&[name])
            .set(t.table_bytes + t.index_bytes);
        m.db_dead_tuples.with_label_values(&[name]).set(t.dead_tuples);
    }
    m.db_replica_lag_bytes.reset();
    for r in &stats.replicas {
        m.db_replica_lag_bytes
            .with_label_values(&[&r.application_name])
            .set(r.replay_lag_bytes.unwrap_or(0));
    }
}
