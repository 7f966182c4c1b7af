//! What a write adds to the tables, beside its documents: the chunk rows of one multi-row insert,
//! the dimension of a bring-your-own collection fixed by its first write, and the tenant's quota
//! checked before anything is written. Shared by document writes and imports.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use pgvector::Vector;
use uuid::Uuid;

use super::chunker;
use super::collections::Loaded;
use super::ddl;
use super::model::ChunkingSpec;
use crate::db::as_owner;
use crate::error::ApiError;

/// A bring-your-own collection created without a dimension takes its first write's.
pub(super) async fn fix_dimension(tx: &Transaction<'_>, loaded: &Loaded, docs: &[Doc]) -> Result<(), ApiError> {
    if loaded.collection.embedding.dimension.is_some() {
        return Ok(());
    }
    let Some(dim) = docs.iter().find_map(|d| d.own_vector.as_ref().map(Vec::len)) else {
        return Ok(());
    };
    set_dimension(tx, loaded, i32::try_from(dim).unwrap_or(i32::MAX)).await
}

/// Fixes the dimension of a bring-your-own collection created without one, and builds its index.
pub(super) async fn set_dimension(tx: &Transaction<'_>, loaded: &Loaded, dim: i32) -> Result<(), ApiError> {
    let mut sql = ddl::set_dimension(&loaded.tables, dim);
    // An HNSW collection's open segment gets its graph when it is sealed.
    let open = loaded.open_segment;
    if let (false, Some(index)) = (
        loaded.collection.index.seals(),
        ddl::vector_index(&loaded.tables, open, loaded.distance(), &loaded.collection.index),
    ) {
        sql = format!("{sql}; {index}");
    }
    as_owner(tx, &sql).await?;
    tx.execute(
        "UPDATE collections SET dimension = $2 WHERE id = $1",
        &[&loaded.collection.id, &dim],
    )
    .await?;
    Ok(())
}

/// Refuses a write that takes the tenant over `max_documents` or `max_storage_bytes`.
pub(super) async fn check_quota(
    tx: &Transaction<'_>,
    tenant: Uuid,
    doc_delta: i64,
    byte_delta: i64,
) -> Result<(), ApiError> {
    if doc_delta <= 0 && byte_delta <= 0 {
        return Ok(());
    }
    let limits = tx
        .query_one(
            "SELECT max_documents, max_storage_bytes FROM tenants WHERE id = $1",
            &[&tenant],
        )
        .await?;
    let (max_docs, max_bytes): (Option<i64>, Option<i64>) = (limits.try_get(0)?, limits.try_get(1)?);
    if max_docs.is_none() && max_bytes.is_none() {
        return Ok(());
    }
    // Serializes the tenant's writers while they count, so two cannot both squeeze under.
    tx.execute("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE", &[&tenant])
        .await?;
    let usage = tx
        .query_one(
            "SELECT coalesce(sum(document_count), 0)::bigint, coalesce(sum(stored_bytes), 0)::bigint FROM collections",
            &[],
        )
        .await?;
    let (docs, bytes): (i64, i64) = (usage.try_get(0)?, usage.try_get(1)?);
    if let Some(max) = max_docs.filter(|&m| docs + doc_delta > m) {
        return Err(ApiError::QuotaExceeded(format!(
            "the tenant holds {docs} documents; this write adds {doc_delta}, over its limit of {max}"
        )));
    }
    if let Some(max) = max_bytes.filter(|&m| bytes + byte_delta > m) {
        return Err(ApiError::QuotaExceeded(format!(
            "the tenant stores {bytes} bytes; this write adds {byte_delta}, over its limit of {max}"
        )));
    }
    Ok(())
}

/// Chunk rows gathered for one multi-row insert.
#[derive(Default)]
pub(super) struct ChunkRows {
    document_id: Vec<String>,
    chunk_index: Vec<i32>,
    text: Vec<String>,
    start_char: Vec<i32>,
    end_char: Vec<i32>,
    metadata: Vec<serde_json::Value>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    embedding: Vec<Vector>,
}

impl ChunkRows {
    pub fn add(&mut self, doc: &Doc, prep: &Prepared, created_at: DateTime<Utc>, now: DateTime<Utc>) {
        for (i, (chunk, vector)) in prep.chunks.iter().zip(&prep.vectors).enumerate() {
            self.document_id.push(doc.id.clone());
            self.chunk_index.push(i32::try_from(i).unwrap_or(i32::MAX));
            self.text.push(chunk.text.clone());
            self.start_char
                .push(i32::try_from(chunk.start_char).unwrap_or(i32::MAX));
            self.end_char.push(i32::try_from(chunk.end_char).unwrap_or(i32::MAX));
            self.metadata.push(doc.metadata.clone());
            self.created_at.push(created_at);
            self.updated_at.push(now);
            self.embedding.push(Vector::from(vector.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.document_id.len()
    }

    /// Inserts the rows into `segment`, the collection's open segment (see
    /// [`ddl::create_tables`]) as read with its registry row locked, so still open.
    pub async fn insert(
        self,
        tx: &Transaction<'_>,
        loaded: &Loaded,
        tenant: Uuid,
        segment: i32,
    ) -> Result<(), ApiError> {
        if self.document_id.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, \
                   created_at, updated_at, embedding, segment) \
                 SELECT $1, *, $11 FROM unnest($2::text[], $3::int[], $4::text[], $5::int[], $6::int[], $7::jsonb[], \
                   $8::timestamptz[], $9::timestamptz[], $10::vector[])",
                loaded.tables.chunks
            ),
            &[
                &tenant,
                &self.document_id,
                &self.chunk_index,
                &self.text,
                &self.start_char,
                &self.end_char,
                &self.metadata,
                &self.created_at,
                &self.updated_at,
                &self.embedding,
                &segment,
            ],
        )
        .await?;
        Ok(())
    }
}

/// One validated input document.
pub(super) struct Doc {
    pub id: String,
    pub text: String,
    pub metadata: serde_json::Value,
    pub chunking: ChunkingSpec,
    pub own_vector: Option<Vec<f32>>,
    pub hash: Vec<u8>,
    pub bytes: i64,
}

/// A document's chunks with their vectors, computed before the transaction.
pub(super) struct Prepared {
    pub chunks: Vec<chunker::Chunk>,
    pub vectors: Vec<Vec<f32>>,
}
