//! Writing documents: validate, chunk and embed outside any transaction, then write documents,
//! chunks, vectors, the collection's counters and the audit row in one transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chunker::{self, ChunkSize};
use super::collections::{self, Loaded};
use super::doc_model::{
    DocumentInput, DocumentOutcome, WriteDocuments, WriteResult, WriteStatus, MAX_BATCH, MAX_ID_LEN, MAX_TEXT_CHARS,
};
use super::model::{validate_metadata, ChunkingSpec};
use super::write_rows::{check_quota, fix_dimension, ChunkRows, Doc, Prepared};
use crate::audit::{self, Event};
use crate::auth::Principal;
use crate::db::tenant_tx;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An id that exists already is a 409.
    Create,
    /// Replaces text and metadata of existing ids; unchanged ones are left alone.
    Upsert,
}

/// The content hash of a document: its text, its chunking and its own vector, if any. An
/// upsert or import whose hash matches the stored one re-embeds nothing.
pub(super) fn content_hash(text: &str, chunking: &ChunkingSpec, own_vector: Option<&[f32]>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    hasher.update(format!("\0{}\0{}", chunking.max_tokens, chunking.overlap_tokens));
    if let Some(v) = own_vector {
        v.iter().for_each(|x| hasher.update(x.to_le_bytes()));
    }
    hasher.finalize().to_vec()
}

/// Bytes a document counts toward `max_storage_bytes`.
pub(super) fn stored_bytes(text: &str, metadata: &serde_json::Value) -> i64 {
    i64::try_from(text.len() + metadata.to_string().len()).unwrap_or(i64::MAX)
}

fn bad(index: usize, id: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidDocument {
        index,
        id: id.to_string(),
        message: message.to_string(),
    }
}

fn validate(loaded: &Loaded, req: WriteDocuments, max_length: usize) -> Result<Vec<Doc>, ApiError> {
    if req.documents.is_empty() || req.documents.len() > MAX_BATCH {
        return Err(ApiError::validation(
            "documents",
            format!("1 to {MAX_BATCH} documents per request"),
        ));
    }
    let default_chunking = match req.chunking {
        Some(c) => c.validate("chunking", max_length)?,
        None => loaded.collection.chunking,
    };
    let own_vectors = loaded.collection.embedding.model.is_none();
    let mut seen = HashSet::new();
    let mut docs = Vec::with_capacity(req.documents.len());
    for (index, input) in req.documents.into_iter().enumerate() {
        let DocumentInput {
            id,
            text,
            embedding,
            metadata,
            chunking,
        } = input;
        let id = id.unwrap_or_else(|| Uuid::now_v7().to_string());
        let label = id.clone();
        check_id(&id).map_err(|e| bad(index, &label, e))?;
        if !seen.insert(id.clone()) {
            return Err(bad(index, &label, "the id appears twice in this request"));
        }
        let metadata = validate_metadata("metadata", metadata)
            .map_err(|e| bad(index, &label, e))?
            .unwrap_or_else(|| serde_json::json!({}));
        let chunking = match chunking {
            Some(c) => c.validate("chunking", max_length).map_err(|e| bad(index, &label, e))?,
            None => default_chunking,
        };
        let text = text.unwrap_or_default();
        let dimension = loaded.collection.embedding.dimension.map(|d| d as usize);
        let own_vector = check_content(&text, embedding, own_vectors, dimension).map_err(|e| bad(index, &label, e))?;
        let hash = content_hash(&text, &chunking, own_vector.as_deref());
        let bytes = stored_bytes(&text, &metadata);
        docs.push(Doc {
            id,
            text,
            metadata,
            chunking,
            own_vector,
            hash,
            bytes,
        });
    }
    if own_vectors && loaded.collection.embedding.dimension.is_none() {
        let dims: HashSet<usize> = docs
            .iter()
            .filter_map(|d| d.own_vector.as_ref().map(Vec::len))
            .collect();
        if dims.len() > 1 {
            return Err(ApiError::validation(
                "documents",
                "the embeddings of one request differ in dimension",
            ));
        }
    }
    Ok(docs)
}

/// The id rule of every incoming document, from a write batch or an import line.
pub(super) fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(|c| c == '/' || c.is_control()) {
        return Err("an id is 1 to 256 bytes with no '/' or control characters");
    }
    Ok(())
}

/// The text and vector rules of every incoming document, from a write batch or an import line:
/// text of at most `MAX_TEXT_CHARS`; a collection with `own_vectors` takes an embedding of 1 to
/// `MAX_DIMENSION` numbers (of `dimension` when known) within float32's range, and any other
/// takes non-empty text and no embedding. Returns the vector as float32.
pub(super) fn check_content(
    text: &str,
    embedding: Option<Vec<f64>>,
    own_vectors: bool,
    dimension: Option<usize>,
) -> Result<Option<Vec<f32>>, String> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("text is longer than {MAX_TEXT_CHARS} characters"));
    }
    match (own_vectors, embedding) {
        (true, None) => Err("this collection takes your vectors: `embedding` is required".into()),
        (false, Some(_)) => Err("this collection embeds its text: send `text`, not `embedding`".into()),
        (false, None) if text.trim().is_empty() => Err("text is empty".into()),
        (false, None) => Ok(None),
        (true, Some(v)) => {
            if v.is_empty() || v.len() > collections::MAX_DIMENSION as usize {
                return Err(format!("an embedding has 1 to {} numbers", collections::MAX_DIMENSION));
            }
            if let Some(dim) = dimension.filter(|&d| d != v.len()) {
                return Err(format!(
                    "the embedding has {} dimensions; the collection {dim}",
                    v.len()
                ));
            }
            to_f32(&v)
                .map(Some)
                .ok_or_else(|| "the embedding holds a number outside float32's finite range".into())
        }
    }
}

/// The vector as float32, or `None` if a number is beyond float32's finite range.
pub fn to_f32(v: &[f64]) -> Option<Vec<f32>> {
    v.iter()
        .map(|&x| {
            let y = x as f32;
            y.is_finite().then_some(y)
        })
        .collect()
}

/// What is stored for an id.
struct Stored {
    hash: Vec<u8>,
    metadata: serde_json::Value,
    chunk_count: i32,
    bytes: i64,
    created_at: DateTime<Utc>,
}

async fn stored(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    ids: &[String],
    lock: bool,
) -> Result<HashMap<String, Stored>, ApiError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let rows = tx
        .query(
            &format!(
                "SELECT id, content_hash, metadata, chunk_count, bytes, created_at FROM {} WHERE id = ANY($1){lock}",
                loaded.tables.docs
            ),
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Stored {
                    hash: r.try_get(1)?,
                    metadata: r.try_get(2)?,
                    chunk_count: r.try_get(3)?,
                    bytes: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                },
            ))
        })
        .collect()
}

/// Document rows of one write, inserted (new documents) or replacing stored ones (new text)
/// in one statement.
#[derive(Default)]
struct DocRows<'a> {
    ids: Vec<&'a str>,
    texts: Vec<&'a str>,
    metadata: Vec<&'a serde_json::Value>,
    hashes: Vec<&'a [u8]>,
    chunk_counts: Vec<i32>,
    bytes: Vec<i64>,
}

impl<'a> DocRows<'a> {
    fn push(&mut self, doc: &'a Doc, chunk_count: i32) {
        self.ids.push(&doc.id);
        self.texts.push(&doc.text);
        self.metadata.push(&doc.metadata);
        self.hashes.push(&doc.hash);
        self.chunk_counts.push(chunk_count);
        self.bytes.push(doc.bytes);
    }

    async fn insert(
        &self,
        tx: &Transaction<'_>,
        loaded: &Loaded,
        tenant: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (tenant_id, id, text, metadata, content_hash, chunk_count, bytes, created_at, updated_at) \
                 SELECT $1, *, $8, $8 FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::int[], $7::int8[])",
                loaded.tables.docs
            ),
            &[&tenant, &self.ids, &self.texts, &self.metadata, &self.hashes, &self.chunk_counts, &self.bytes, &now],
        )
        .await?;
        Ok(())
    }

    /// New text for stored documents: their old chunks go, the rows take the new text.
    async fn replace(&self, tx: &Transaction<'_>, loaded: &Loaded, now: DateTime<Utc>) -> Result<(), ApiError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!("DELETE FROM {} WHERE document_id = ANY($1)", loaded.tables.chunks),
            &[&self.ids],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE {} d SET text = v.t, metadata = v.m, content_hash = v.h, chunk_count = v.c, bytes = v.b, \
                 updated_at = $7 FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bytea[], $5::int[], $6::int8[]) \
                 v(id, t, m, h, c, b) WHERE d.id = v.id",
                loaded.tables.docs
            ),
            &[
                &self.ids,
                &self.texts,
                &self.metadata,
                &self.hashes,
                &self.chunk_counts,
                &self.bytes,
                &now,
            ],
        )
        .await?;
        Ok(())
    }
}

/// A write batch validated, compared with what is stored and embedded: everything of a write
/// that happens before its transaction opens.
pub struct Planned {
    name: String,
    mode: Mode,
    docs: Vec<Doc>,
    ids: Vec<String>,
    prepared: HashMap<usize, Prepared>,
    embedded_chunks: usize,
}

pub async fn write(
    state: &AppState,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    req: WriteDocuments,
    mode: Mode,
) -> Result<WriteResult, ApiError> {
    let planned = plan(state, tenant, name, req, mode).await?;
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let (result, pending) = apply(&tx, tenant, principal, planned).await?;
    tx.commit().await?;
    if pending {
        state.jobs.wake();
    }
    Ok(result)
}

/// Validates a write batch and chunks and embeds what is new or changed, with no transaction
/// open. Another plane that indexes text (a run's payload, a cache entry) plans here, then
/// applies the plan in its own transaction.
pub async fn plan(
    state: &AppState,
    tenant: Uuid,
    name: &str,
    req: WriteDocuments,
    mode: Mode,
) -> Result<Planned, ApiError> {
    let loaded = collections::load_alone(state, tenant, name).await?;
    let docs = validate(&loaded, req, state.embedder.info().max_length)?;
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    super::segments::admit(state, &loaded).await?;

    // Which documents need chunks and vectors: new ones and changed texts.
    let before = {
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        let before = stored(&tx, &loaded, &ids, false).await?;
        tx.commit().await?;
        before
    };
    if mode == Mode::Create {
        if let Some((index, doc)) = docs.iter().enumerate().find(|(_, d)| before.contains_key(&d.id)) {
            return Err(ApiError::Conflict(format!(
                "document {index} (`{}`) exists already; use PUT to replace documents",
                doc.id
            )));
        }
    }
    let to_embed: Vec<usize> = (0..docs.len())
        .filter(|&i| before.get(&docs[i].id).is_none_or(|s| s.hash != docs[i].hash))
        .collect();
    let prepared = prepare(state, &docs, &to_embed).await?;
    let embedded_chunks = prepared.values().map(|p| p.chunks.len()).sum();
    Ok(Planned {
        name: name.to_string(),
        mode,
        docs,
        ids,
        prepared,
        embedded_chunks,
    })
}

/// Writes a planned batch in `tx`: documents, chunks, vectors, the collection's counters and the
/// audit row. Returns the outcome and whether a merge job was queued (wake the workers once
/// `tx` commits).
pub async fn apply(
    tx: &Transaction<'_>,
    tenant: Uuid,
    principal: &Principal,
    planned: Planned,
) -> Result<(WriteResult, bool), ApiError> {
    let Planned {
        name,
        mode,
        docs,
        ids,
        prepared,
        embedded_chunks,
    } = planned;
    let name = name.as_str();
    let loaded = collections::load(tx, tenant, name, true).await?;
    let now: DateTime<Utc> = tx.query_one("SELECT now()", &[]).await?.try_get(0)?;
    fix_dimension(tx, &loaded, &docs).await?;
    let current = stored(tx, &loaded, &ids, true).await?;
    let mut outcomes = Vec::with_capacity(docs.len());
    let (mut doc_delta, mut chunk_delta, mut byte_delta) = (0i64, 0i64, 0i64);
    let mut rows = ChunkRows::default();
    // Written after the loop, a statement each (not one per document: a round trip each).
    let (mut fresh, mut replaced, mut retagged) = (DocRows::default(), DocRows::default(), Vec::new());
    for (index, doc) in docs.iter().enumerate() {
        let old = current.get(&doc.id);
        if mode == Mode::Create && old.is_some() {
            return Err(ApiError::Conflict(format!(
                "document {index} (`{}`) exists already",
                doc.id
            )));
        }
        let same_text = old.is_some_and(|s| s.hash == doc.hash);
        if same_text && old.is_some_and(|s| s.metadata == doc.metadata) {
            outcomes.push(DocumentOutcome {
                id: doc.id.clone(),
                status: WriteStatus::Unchanged,
                chunks: old.map_or(0, |s| s.chunk_count),
                embedded: false,
            });
            continue;
        }
        if same_text {
            // Only the metadata changed: no new vectors, the chunks take the new metadata.
            let old = old.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored document vanished")))?;
            retagged.push(index);
            byte_delta += doc.bytes - old.bytes;
            outcomes.push(DocumentOutcome {
                id: doc.id.clone(),
                status: WriteStatus::Updated,
                chunks: old.chunk_count,
                embedded: false,
            });
            continue;
        }
        let Some(prep) = prepared.get(&index) else {
            return Err(ApiError::Conflict(format!(
                "document `{}` was changed by another request while this one was embedding; retry",
                doc.id
            )));
        };
        let chunk_count = i32::try_from(prep.chunks.len()).unwrap_or(i32::MAX);
        let created_at = match old {
            None => {
                fresh.push(doc, chunk_count);
                now
            }
            Some(o) => {
                replaced.push(doc, chunk_count);
                o.created_at
            }
        };
        rows.add(doc, prep, created_at, now);
        doc_delta += i64::from(old.is_none());
        chunk_delta += i64::from(chunk_count) - old.map_or(0, |s| i64::from(s.chunk_count));
        byte_delta += doc.bytes - old.map_or(0, |s| s.bytes);
        outcomes.push(DocumentOutcome {
            id: doc.id.clone(),
            status: if old.is_none() {
                WriteStatus::Created
            } else {
                WriteStatus::Updated
            },
            chunks: chunk_count,
            embedded: true,
        });
    }
    fresh.insert(tx, &loaded, tenant, now).await?;
    replaced.replace(tx, &loaded, now).await?;
    if !retagged.is_empty() {
        let ids: Vec<&str> = retagged.iter().map(|&i| docs[i].id.as_str()).collect();
        let metadata: Vec<&serde_json::Value> = retagged.iter().map(|&i| &docs[i].metadata).collect();
        let bytes: Vec<i64> = retagged.iter().map(|&i| docs[i].bytes).collect();
        tx.execute(
            &format!(
                "UPDATE {} d SET metadata = v.m, bytes = v.b, updated_at = $4 \
                 FROM unnest($1::text[], $2::jsonb[], $3::int8[]) v(id, m, b) WHERE d.id = v.id",
                loaded.tables.docs
            ),
            &[&ids, &metadata, &bytes, &now],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE {} c SET metadata = v.m, updated_at = $3 \
                 FROM unnest($1::text[], $2::jsonb[]) v(id, m) WHERE c.document_id = v.id",
                loaded.tables.chunks
            ),
            &[&ids, &metadata, &now],
        )
        .await?;
    }
    let written = rows.len() > 0;
    let pending = loaded.collection.index.seals() && written;
    rows.insert(tx, &loaded, tenant, loaded.open_segment).await?;
    // The merge seals the open segment into the ANN index and compacts the text statistics,
    // which every chunk written or removed changed.
    if written || chunk_delta != 0 {
        crate::jobs::store::enqueue_merge(tx, tenant, loaded.collection.id, name).await?;
    }
    check_quota(tx, tenant, doc_delta, byte_delta).await?;
    tx.execute(
        "UPDATE collections SET document_count = document_count + $2, chunk_count = chunk_count + $3, \
         stored_bytes = stored_bytes + $4, updated_at = now() WHERE id = $1",
        &[&loaded.collection.id, &doc_delta, &chunk_delta, &byte_delta],
    )
    .await?;
    let count = |s: WriteStatus| outcomes.iter().filter(|o| o.status == s).count();
    audit::record(
        tx,
        tenant,
        principal,
        Event::new("documents.write", "collection", loaded.collection.id).details(serde_json::json!({
            "collection": name,
            "created": count(WriteStatus::Created),
            "updated": count(WriteStatus::Updated),
            "unchanged": count(WriteStatus::Unchanged),
            "ids": ids.iter().take(100).collect::<Vec<_>>(),
        })),
    )
    .await?;
    Ok((
        WriteResult {
            documents: outcomes,
            embedded_chunks,
        },
        pending,
    ))
}

/// Chunks and embeds the documents at `indexes` (with the shared embedder, no transaction open).
pub(super) async fn prepare(
    state: &AppState,
    docs: &[Doc],
    indexes: &[usize],
) -> Result<HashMap<usize, Prepared>, ApiError> {
    let mut prepared: HashMap<usize, Prepared> = HashMap::new();
    let mut texts: Vec<(usize, String)> = vec![];
    for &i in indexes {
        let doc = &docs[i];
        if let Some(v) = &doc.own_vector {
            let chunk = chunker::Chunk {
                text: doc.text.clone(),
                start_char: 0,
                end_char: doc.text.chars().count(),
                tokens: 0,
            };
            prepared.insert(
                i,
                Prepared {
                    chunks: vec![chunk],
                    vectors: vec![v.clone()],
                },
            );
            continue;
        }
        let embedder = state.embedder.clone();
        let text = doc.text.clone();
        let size = ChunkSize {
            max_tokens: doc.chunking.max_tokens as usize,
            overlap_tokens: doc.chunking.overlap_tokens as usize,
        };
        let chunks = tokio::task::spawn_blocking(move || chunker::chunk(embedder.tokenizer(), &text, size))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("chunking panicked: {e}")))?
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
        if chunks.is_empty() {
            return Err(bad(i, &doc.id, "text has nothing to embed"));
        }
        texts.extend(chunks.iter().map(|c| (i, c.text.clone())));
        prepared.insert(
            i,
            Prepared {
                chunks,
                vectors: vec![],
            },
        );
    }
    // Through the shared queue, a bounded slice at a time.
    for slice in texts.chunks(state.embed_limits.max_inputs.max(1)) {
        let embedded = state
            .embedder
            .embed(slice.iter().map(|(_, t)| t.clone()).collect())
            .await?;
        for ((i, _), vector) in slice.iter().zip(embedded.vectors) {
            if let Some(p) = prepared.get_mut(i) {
                p.vectors.push(vector);
            }
        }
    }
    Ok(prepared)
}
