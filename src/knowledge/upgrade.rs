//! Converts collections created by older versions, one transaction per collection, at startup:
//! layout 1 (before migration V4: one unpartitioned chunk table) and layout 3 (before V10: a
//! `main` partition with the ANN index and a `pending` one) to the segmented layout of
//! [`super::ddl::create_chunks`] (layout 4); layout 2 (before V8) first to layout 3, which adds
//! the text statistics BM25 reads ([`super::ddl::create_text_stats`]), counted from the chunks.
//! A conversion copies the rows and builds the ANN index again: minutes for a large collection,
//! during which the server is not ready.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::ddl::{self, Tables};
use super::model::{Distance, IndexSpec};

/// The columns a conversion copies (the text column is generated).
const COLUMNS: &str =
    "tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding";

struct Old {
    tenant: Uuid,
    id: Uuid,
    dimension: Option<i32>,
    distance: Distance,
    index: IndexSpec,
    language: String,
}

impl Old {
    fn read(row: &tokio_postgres::Row) -> anyhow::Result<Old> {
        let id: Uuid = row.try_get("id")?;
        let distance: String = row.try_get("distance")?;
        Ok(Old {
            tenant: row.try_get("tenant_id")?,
            id,
            dimension: row.try_get("dimension")?,
            distance: Distance::parse(&distance).ok_or_else(|| anyhow::anyhow!("collection {id}: bad distance"))?,
            index: serde_json::from_value(row.try_get("index_config")?)?,
            language: row.try_get("text_language")?,
        })
    }

    /// Layout 4's chunk table filled from the old tables `sealed` (rows in the ANN index) and
    /// `fresh` (rows not yet in it), inserted into the segments directly, so that the statistics'
    /// triggers (on the parent) do not count them again; the ANN index built; the registry row
    /// updated. For an HNSW collection segment 1 holds the indexed rows and segment 2, open, the
    /// others; any other collection keeps all in segment 1.
    fn fill(&self, t: &Tables, sealed: &str, fresh: Option<&str>) -> String {
        let seals = self.index.seals();
        let open = if seals { 2 } else { 1 };
        let mut sql = format!(
            "{create};
             INSERT INTO {s1} ({COLUMNS}, segment) SELECT {COLUMNS}, 1 FROM {sealed};",
            create = ddl::create_chunks(t, self.dimension, &self.language),
            s1 = t.segment(1),
        );
        if seals {
            sql.push_str(&ddl::create_segment(t, 2));
        }
        if let Some(fresh) = fresh {
            sql.push_str(&format!(
                "INSERT INTO {seg} ({COLUMNS}, segment) SELECT {COLUMNS}, {open} FROM {fresh};",
                seg = t.segment(open)
            ));
        }
        if let (Some(_), Some(index)) = (self.dimension, ddl::vector_index(t, 1, self.distance, &self.index)) {
            sql.push_str(&index);
            sql.push(';');
        }
        sql.push_str(&format!(
            "UPDATE collections SET layout = 4, open_segment = {open}, last_segment = {open} WHERE id = '{id}';",
            id = self.id
        ));
        sql
    }
}

const SELECT: &str = "SELECT tenant_id, id, dimension, distance, index_config, text_language FROM collections";

pub async fn run(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    for row in client.query(&format!("{SELECT} WHERE layout = 1"), &[]).await? {
        let old = Old::read(&row)?;
        let t = Tables::new(old.tenant, old.id);
        let c = old.id.simple();
        let v1 = format!("{}.chunks_{c}_v1", t.schema);
        let sql = format!(
            "ALTER TABLE {chunks} RENAME TO chunks_{c}_v1;
             DROP INDEX IF EXISTS {schema}.chunks_{c}_embedding_idx, {schema}.chunks_{c}_tsv_idx, {schema}.chunks_{c}_metadata_idx;
             {stats}
             {fill}
             INSERT INTO {terms} (tenant_id, lexeme, chunks, tokens)
               SELECT tenant_id, lexeme, count(*), 0 FROM {v1}, unnest(tsv) GROUP BY 1, 2
               UNION ALL
               SELECT '{tenant}'::uuid, '', count(*), coalesce(sum(length(tsv)), 0) FROM {v1};
             DROP TABLE {v1};",
            chunks = t.chunks,
            schema = t.schema,
            terms = t.terms,
            tenant = old.tenant,
            stats = ddl::create_text_stats(&t, &old.language).replace(&ddl::text_stats_triggers(&t, &old.language), ""),
            fill = old.fill(&t, &v1, None),
        );
        let tx = client.transaction().await?;
        tx.batch_execute(&sql).await?;
        tx.commit().await?;
        tracing::info!(collection = %old.id, "collection converted to the segmented chunk layout (from layout 1)");
    }
    let rows = client
        .query(
            "SELECT tenant_id, id, text_language FROM collections WHERE layout = 2",
            &[],
        )
        .await?;
    for row in rows {
        let (tenant, id): (Uuid, Uuid) = (row.try_get("tenant_id")?, row.try_get("id")?);
        let language: String = row.try_get("text_language")?;
        let t = Tables::new(tenant, id);
        let tx = client.transaction().await?;
        // No write may land between the count and the triggers.
        tx.batch_execute(
            &format!(
                "LOCK TABLE {chunks} IN SHARE MODE;
             {create}
             INSERT INTO {terms} (tenant_id, lexeme, chunks, tokens)
               SELECT tenant_id, lexeme, count(*), 0 FROM {chunks}, unnest(tsv) GROUP BY 1, 2
               UNION ALL
               SELECT $tenant$, '', count(*), coalesce(sum(length(tsv)), 0) FROM {chunks};",
                chunks = t.chunks,
                terms = t.terms,
                create = ddl::create_text_stats(&t, &language),
            )
            .replace("$tenant$", &format!("'{tenant}'::uuid")),
        )
        .await?;
        tx.execute("UPDATE collections SET layout = 3 WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        tracing::info!(collection = %id, "collection given text statistics (layout 3)");
    }
    for row in client.query(&format!("{SELECT} WHERE layout = 3"), &[]).await? {
        let old = Old::read(&row)?;
        let t = Tables::new(old.tenant, old.id);
        let c = old.id.simple();
        let schema = &t.schema;
        // The statistics stay: the same rows. The old table's triggers go with it.
        let sql = format!(
            "ALTER TABLE {chunks} RENAME TO chunks_{c}_v3;
             DROP INDEX IF EXISTS {schema}.chunks_{c}_tsv_idx, {schema}.chunks_{c}_metadata_idx;
             DROP TRIGGER IF EXISTS chunks_{c}_stats_insert ON {schema}.chunks_{c}_v3;
             DROP TRIGGER IF EXISTS chunks_{c}_stats_delete ON {schema}.chunks_{c}_v3;
             DROP TRIGGER IF EXISTS chunks_{c}_stats_update ON {schema}.chunks_{c}_v3;
             {fill}
             {triggers};
             DROP TABLE {schema}.chunks_{c}_v3;",
            chunks = t.chunks,
            fill = old.fill(
                &t,
                &format!("{schema}.chunks_{c}_main"),
                Some(&format!("{schema}.chunks_{c}_pending"))
            ),
            triggers = ddl::text_stats_triggers(&t, &old.language),
        );
        let tx = client.transaction().await?;
        tx.batch_execute(&sql).await?;
        tx.commit().await?;
        tracing::info!(collection = %old.id, "collection converted to the segmented chunk layout (from layout 3)");
    }
    Ok(())
}
