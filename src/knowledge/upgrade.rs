//! Converts collections created by older versions, one transaction per collection, at startup:
//! layout 1 (before migration V4: one unpartitioned chunk table) to the partitioned layout of
//! [`super::ddl::create_chunks`]; layout 2 (before V8) to layout 3, which adds the text
//! statistics BM25 reads ([`super::ddl::create_text_stats`]), counted from the existing chunks.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::ddl::{self, Tables};
use super::model::{Distance, IndexSpec};

pub async fn run(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let rows = client
        .query(
            "SELECT tenant_id, id, dimension, distance, index_config, text_language FROM collections WHERE layout = 1",
            &[],
        )
        .await?;
    for row in rows {
        let (tenant, id): (Uuid, Uuid) = (row.try_get(0)?, row.try_get(1)?);
        let dimension: Option<i32> = row.try_get(2)?;
        let distance: String = row.try_get(3)?;
        let distance = Distance::parse(&distance).ok_or_else(|| anyhow::anyhow!("collection {id}: bad distance"))?;
        let index: IndexSpec = serde_json::from_value(row.try_get(4)?)?;
        let language: String = row.try_get(5)?;
        let t = Tables::new(tenant, id);
        let old = format!("{}.chunks_{}_v1", t.schema, id.simple());
        let bare_old = format!("chunks_{}_v1", id.simple());
        let mut sql = format!(
            "ALTER TABLE {chunks} RENAME TO {bare_old};
             DROP INDEX IF EXISTS {schema}.{idx}, {schema}.chunks_{c}_tsv_idx, {schema}.chunks_{c}_metadata_idx;
             {create};
             {stats}
             INSERT INTO {chunks} (tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding)
               SELECT tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding FROM {old};
             DROP TABLE {old};",
            chunks = t.chunks,
            schema = t.schema,
            idx = t.vector_index_name(),
            c = id.simple(),
            create = ddl::create_chunks(&t, dimension, &language),
            stats = ddl::create_text_stats(&t),
        );
        if let (Some(_), Some(index)) = (dimension, ddl::vector_index(&t, distance, &index)) {
            sql.push_str(&index);
            sql.push(';');
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&sql).await?;
        // Layout 2's tables, with the statistics of layout 3 counted by the triggers as the rows
        // are copied in.
        tx.execute("UPDATE collections SET layout = 3 WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        tracing::info!(collection = %id, "collection converted to the partitioned chunk layout");
    }
    let rows = client
        .query("SELECT tenant_id, id FROM collections WHERE layout = 2", &[])
        .await?;
    for row in rows {
        let (tenant, id): (Uuid, Uuid) = (row.try_get("tenant_id")?, row.try_get("id")?);
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
                create = ddl::create_text_stats(&t),
            )
            .replace("$tenant$", &format!("'{tenant}'::uuid")),
        )
        .await?;
        tx.execute("UPDATE collections SET layout = 3 WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        tracing::info!(collection = %id, "collection given text statistics (layout 3)");
    }
    Ok(())
}
