//! The collections service: one transaction per request, the registry row and the collection's
//! tables together.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::ddl::{self, Tables};
use super::model::{
    validate_description, validate_metadata, validate_name, ChunkingSpec, Collection, CreateCollection, Distance,
    EmbeddingInfo, EmbeddingSpec, IndexSpec, TextLanguage, TextSearchInfo, UpdateCollection,
};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::{as_owner, tenant_tx};
use crate::error::{is_unique_violation, ApiError};
use crate::http::pagination::{Cursor, Limit};
use crate::state::AppState;

/// A collection as the services use it: the registry row, parsed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub tenant: Uuid,
    pub collection: Collection,
    pub tables: Tables,
    /// The segment that takes new chunks (see [`ddl::create_tables`]). Writers read it with the
    /// registry row locked, so none writes into a segment a merge has sealed.
    pub open_segment: i32,
    /// The highest segment number given out.
    pub last_segment: i32,
}

impl Loaded {
    pub fn distance(&self) -> Distance {
        self.collection.distance
    }

    pub fn language(&self) -> &str {
        &self.collection.text_search.language
    }
}

/// The most dimensions a collection's vectors have: what pgvector's `vector` type indexes.
pub const MAX_DIMENSION: i32 = 2000;

const COLUMNS: &str = "id, name, description, model, dimension, distance, index_config, text_language, chunking, \
    metadata, document_count, chunk_count, stored_bytes, created_at, updated_at, open_segment, last_segment";

fn from_row(row: &tokio_postgres::Row) -> Result<Collection, ApiError> {
    let corrupt = |what: &str| ApiError::Internal(anyhow::anyhow!("collection registry row has a bad {what}"));
    let distance: String = row.try_get("distance")?;
    let index: serde_json::Value = row.try_get("index_config")?;
    let chunking: serde_json::Value = row.try_get("chunking")?;
    Ok(Collection {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        embedding: EmbeddingInfo {
            model: row.try_get("model")?,
            dimension: row.try_get("dimension")?,
        },
        distance: Distance::parse(&distance).ok_or_else(|| corrupt("distance"))?,
        index: serde_json::from_value(index).map_err(|_| corrupt("index"))?,
        text_search: TextSearchInfo {
            language: row.try_get("text_language")?,
        },
        chunking: serde_json::from_value(chunking).map_err(|_| corrupt("chunking"))?,
        metadata: row.try_get("metadata")?,
        document_count: row.try_get("document_count")?,
        chunk_count: row.try_get("chunk_count")?,
        stored_bytes: row.try_get("stored_bytes")?,
        disk_bytes: None,
        indexing: None,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        resource: "collection",
        id: name.to_string(),
    }
}

/// Reads a collection by name inside `tx` (optionally locking its registry row).
pub async fn load(tx: &Transaction<'_>, tenant: Uuid, name: &str, lock: bool) -> Result<Loaded, ApiError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    // Prepared once per connection: every search and write starts here.
    let statement =
        crate::db::pool::prepared(tx, &format!("SELECT {COLUMNS} FROM collections WHERE name = $1{lock}")).await?;
    let row = tx
        .query_opt(&statement, &[&name])
        .await?
        .ok_or_else(|| not_found(name))?;
    let collection = from_row(&row)?;
    Ok(Loaded {
        tenant,
        tables: Tables::new(tenant, collection.id),
        collection,
        open_segment: row.try_get("open_segment")?,
        last_segment: row.try_get("last_segment")?,
    })
}

/// Reads a collection in a short transaction of its own (before embedding, say).
pub async fn load_alone(state: &AppState, tenant: Uuid, name: &str) -> Result<Loaded, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = load(&tx, tenant, name, false).await?;
    tx.commit().await?;
    Ok(loaded)
}

pub async fn create(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    req: CreateCollection,
) -> Result<Collection, ApiError> {
    let name = validate_name("name", &req.name)?;
    let description = validate_description(req.description)?.unwrap_or_default();
    let metadata = validate_metadata("metadata", req.metadata)?.unwrap_or_else(|| serde_json::json!({}));
    let info = state.embedder.info();
    let distance = req.distance.unwrap_or(Distance::Cosine);
    let index = req
        .index
        .unwrap_or(IndexSpec::Hnsw {
            m: None,
            ef_construction: None,
        })
        .resolved()?;
    let language = req.text_search.map_or(TextLanguage::English, |t| t.language).as_str();
    let chunking = req
        .chunking
        .unwrap_or(ChunkingSpec::DEFAULT)
        .validate("chunking", info.max_length)?;
    let (model, dimension) = match req.embedding.unwrap_or_default() {
        EmbeddingSpec::Vectors(own) => (None, own.dimension),
        EmbeddingSpec::Model(spec) => {
            let model = spec.model.unwrap_or_else(|| info.name.clone());
            if model != info.name {
                return Err(ApiError::ModelNotFound {
                    requested: model,
                    served: info.name.clone(),
                });
            }
            (Some(model), Some(i32::try_from(info.dims).unwrap_or(i32::MAX)))
        }
    };
    if dimension.is_some_and(|d| !(1..=MAX_DIMENSION).contains(&d)) {
        return Err(ApiError::validation(
            "embedding.dimension",
            format!("must be 1 to {MAX_DIMENSION}"),
        ));
    }

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO collections (tenant_id, name, description, model, dimension, distance, index_config, \
                   text_language, chunking, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
            ),
            &[
                &tenant,
                &name,
                &description,
                &model,
                &dimension,
                &distance.as_str(),
                &serde_json::to_value(&index).map_err(anyhow::Error::new)?,
                &language,
                &serde_json::to_value(chunking).map_err(anyhow::Error::new)?,
                &metadata,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "collections_tenant_id_name_key") {
                ApiError::Conflict(format!("a collection named `{name}` already exists"))
            } else {
                e.into()
            }
        })?;
    let collection = from_row(&row)?;
    let tables = Tables::new(tenant, collection.id);
    let mut ddl_sql = ddl::create_tables(&tables, dimension, &language);
    // The first segment is open: an HNSW collection's gets its graph when a merge seals it.
    if let (Some(_), false, Some(index_sql)) = (
        dimension,
        index.seals(),
        ddl::vector_index(&tables, 1, distance, &index),
    ) {
        ddl_sql = format!("{ddl_sql}; {index_sql}");
    }
    as_owner(&tx, &ddl_sql).await?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("collection.create", "collection", collection.id)
            .details(serde_json::json!({"name": name, "model": model, "dimension": dimension})),
    )
    .await?;
    tx.commit().await?;
    Ok(collection)
}

pub struct Page {
    pub data: Vec<Collection>,
    pub next_cursor: Option<String>,
}

pub async fn list(state: &AppState, tenant: Uuid, limit: Limit, cursor: Option<Cursor>) -> Result<Page, ApiError> {
    let (after_ts, after_id) = cursor.map(|c| (Some(c.created_at), Some(c.id))).unwrap_or((None, None));
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM collections \
                 WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2) \
                 ORDER BY created_at, id LIMIT $3"
            ),
            &[&after_ts, &after_id, &limit.fetch()],
        )
        .await?;
    tx.commit().await?;
    let mut data = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = limit
        .trim(&mut data)
        .then(|| data.last().map(|c| Cursor::new(c.created_at, c.id).encode()))
        .flatten();
    Ok(Page { data, next_cursor })
}

/// One collection, with the bytes its tables and indexes take on disk.
pub async fn get(state: &AppState, tenant: Uuid, name: &str) -> Result<Collection, ApiError> {
    let mut client = state.read_conn(tenant).await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = load(&tx, tenant, name, false).await?;
    let (table_bytes, index_bytes) = disk_bytes(&tx, &loaded.tables).await?;
    let indexing = super::catalog::indexing(&tx, &loaded.tables).await?;
    tx.commit().await?;
    let mut collection = loaded.collection;
    collection.disk_bytes = Some(table_bytes + index_bytes);
    collection.indexing = Some(indexing);
    Ok(collection)
}

/// Bytes on disk of a collection's tables (rows and TOAST) and of their indexes.
pub async fn disk_bytes(tx: &Transaction<'_>, tables: &Tables) -> Result<(i64, i64), ApiError> {
    let row = tx
        .query_one(
            "SELECT coalesce(sum(pg_table_size(relid)), 0)::int8, coalesce(sum(pg_indexes_size(relid)), 0)::int8 \
             FROM (SELECT $1::text::regclass AS relid UNION ALL \
                   SELECT relid FROM pg_partition_tree($2::text::regclass) WHERE isleaf) t",
            &[&tables.docs, &tables.chunks],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

pub async fn update(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    req: UpdateCollection,
) -> Result<Collection, ApiError> {
    if req.index.is_some() || req.distance.is_some() {
        return Err(ApiError::NeedsJob {
            code: "reindex_required",
            field: if req.index.is_some() { "index" } else { "distance" },
            what: "vector index",
            endpoint: format!("/v1/collections/{name}/reindex"),
        });
    }
    if req.embedding.is_some() {
        return Err(ApiError::NeedsJob {
            code: "reembed_required",
            field: "embedding",
            what: "vectors",
            endpoint: format!("/v1/collections/{name}/reembed"),
        });
    }
    let description = validate_description(req.description)?;
    let metadata = validate_metadata("metadata", req.metadata)?;
    let chunking = req
        .chunking
        .map(|c| c.validate("chunking", state.embedder.info().max_length))
        .transpose()?
        .map(|c| serde_json::to_value(c).map_err(anyhow::Error::new))
        .transpose()?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE collections SET description = coalesce($2, description), \
                   chunking = coalesce($3, chunking), metadata = coalesce($4, metadata), updated_at = now() \
                 WHERE name = $1 RETURNING {COLUMNS}"
            ),
            &[&name, &description, &chunking, &metadata],
        )
        .await?
        .ok_or_else(|| not_found(name))?;
    let collection = from_row(&row)?;
    let changed: Vec<&str> = [
        ("description", description.is_some()),
        ("chunking", chunking.is_some()),
        ("metadata", metadata.is_some()),
    ]
    .iter()
    .filter_map(|(f, c)| c.then_some(*f))
    .collect();
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("collection.update", "collection", collection.id).details(serde_json::json!({"fields": changed})),
    )
    .await?;
    tx.commit().await?;
    Ok(collection)
}

/// Deletes the collection: its registry row, its tables (every document, chunk and vector) and
/// an audit row, in one transaction.
pub async fn delete(state: &AppState, tenant: Uuid, principal: &Principal, name: &str) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let loaded = load(&tx, tenant, name, true).await?;
    tx.execute("DELETE FROM collections WHERE id = $1", &[&loaded.collection.id])
        .await?;
    as_owner(&tx, &ddl::drop_tables(&loaded.tables)).await?;
    audit::record(
        &tx,
        tenant,
        principal,
        Event::new("collection.delete", "collection", loaded.collection.id).details(serde_json::json!({
            "name": name, "documents": loaded.collection.document_count
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
