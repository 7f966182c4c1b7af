//! Converts collections created before migration V4 (one unpartitioned chunk table) to the
//! partitioned layout of [`super::ddl::create_chunks`], one transaction per collection, at startup.

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
             INSERT INTO {chunks} (tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding)
               SELECT tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, created_at, updated_at, embedding FROM {old};
             DROP TABLE {old};",
            chunks = t.chunks,
            schema = t.schema,
            idx = t.vector_index_name(),
            c = id.simple(),
            create = ddl::create_chunks(&t, dimension, &language),
        );
        if let (Some(_), Some(index)) = (dimension, ddl::vector_index(&t, distance, &index)) {
            sql.push_str(&index);
            sql.push(';');
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&sql).await?;
        tx.execute("UPDATE collections SET layout = 2 WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        tracing::info!(collection = %id, "collection converted to the partitioned chunk layout");
    }
    Ok(())
}
