//! The import job: staged records into the collection, a batch per transaction, each with its
//! checkpoint (the last staged line written), so a job resumed after a crash neither repeats
//! nor skips a record.
//!
//! Rows go to the collection's open segment (see [`super::segments`]). Into an HNSW collection,
//! each batch queues a merge, which seals the open segment as it fills and builds its graph
//! while the load goes on, as for the documents endpoint. Into an empty IVFFlat collection, the
//! index is dropped first and built once at the end, with parallel maintenance workers.
//! Text records are chunked and embedded outside any transaction, the next batch's embedding
//! overlapping the current batch's write.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use serde_json::json;

use super::collections::{self, Loaded};
use super::ingest;
use super::write_rows::{self, ChunkRows, Doc, Prepared};
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::{JobCtx, Outcome};
use crate::state::AppState;

/// Staged vector records per transaction.
const VECTOR_BATCH: i64 = 5000;
/// Staged text records per transaction (each is chunked and embedded first).
const TEXT_BATCH: i64 = 64;

fn job_error(code: &'static str, message: String) -> ApiError {
    ApiError::JobFailed { code, message }
}

pub async fn run(ctx: &JobCtx) -> Result<Outcome, ApiError> {
    let state = &ctx.state;
    let tenant = ctx.tenant()?;
    let name = ctx.job.collection_name.clone().unwrap_or_default();
    let staging = ctx.job.params["staging"].as_str().unwrap_or_default().to_string();
    let Some(loaded) = super::maintain::job_collection(ctx).await? else {
        crate::knowledge::import::drop_staging(state, &ctx.job.params).await?;
        return Err(ApiError::NotFound {
            resource: "collection",
            id: name,
        });
    };
    let mut checkpoint = ctx.job.checkpoint.clone();
    let mut done = ctx.job.done;
    let texts = loaded.collection.embedding.model.is_some();
    // Text records embedded so far (the others had the text already stored), for the job's progress.
    let mut embedded = texts.then(|| checkpoint["embedded"].as_i64().unwrap_or(0));
    {
        let client = state.pool.get().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&staging])
            .await?
            .try_get(0)?;
        let total: i64 = ctx.job.params["records"].as_i64().unwrap_or(0);
        let rows: i64 = match exists {
            true => client
                .query_one(&format!("SELECT count(*) FROM {staging}"), &[])
                .await?
                .try_get(0)?,
            false => -1,
        };
        if rows != total {
            return Err(job_error(
                "staging_lost",
                format!("the staged records are gone ({rows} of {total}; the database restarted uncleanly): send the import again"),
            ));
        }
    }
    if checkpoint.get("phase").is_none() {
        // First run: load into an empty indexed collection without its index.
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        let empty: bool = tx
            .query_one(
                &format!("SELECT NOT EXISTS (SELECT 1 FROM {})", loaded.tables.chunks),
                &[],
            )
            .await?
            .try_get(0)?;
        // An HNSW collection's rows take the documents endpoint's path: merges seal the open
        // segment as it fills and build each graph while the load goes on (measured against
        // one build at the end: docs/benchmarks.md, sustained ingest).
        let fast =
            empty && loaded.collection.index != super::model::IndexSpec::None {} && !loaded.collection.index.seals();
        if fast {
            // An IVFFlat collection's one segment has its index (an HNSW collection's open
            // segment has none): built again once the rows are in.
            as_owner(
                &tx,
                &format!(
                    "DROP INDEX IF EXISTS {}.{}",
                    loaded.tables.schema,
                    loaded.tables.vector_index_name(loaded.open_segment)
                ),
            )
            .await?;
        }
        checkpoint = mark(json!({"phase": "load", "line": 0, "fast": fast}), embedded);
        ctx.checkpoint(&tx, &checkpoint, done).await?;
        tx.commit().await?;
    }
    let fast = checkpoint["fast"].as_bool().unwrap_or(false);
    let mut outcome = Outcome::Completed;
    if checkpoint["phase"] == "load" {
        let after = checkpoint["line"].as_i64().unwrap_or(0);
        let result = match embedded.as_mut() {
            None => load_vectors(ctx, &loaded, &staging, after, fast, &mut done).await,
            Some(embedded) => load_texts(ctx, &loaded, &staging, after, fast, (&mut done, embedded)).await,
        };
        let loaded_fully = match result {
            Ok(fully) => fully,
            Err(err) => {
                // The job failed (a full disk, say) with whole documents written up to its
                // checkpoint: give them their index back before saying so.
                if fast {
                    if let Err(e) = build_index(state, &loaded).await {
                        tracing::warn!(job = %ctx.job.id, error = %e, "rebuilding the index of a failed import");
                    }
                }
                return Err(err);
            }
        };
        if !loaded_fully {
            outcome = Outcome::Cancelled;
        }
        checkpoint = mark(
            json!({"phase": if fast { "index" } else { "finish" }, "fast": fast}),
            embedded,
        );
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        ctx.checkpoint(&tx, &checkpoint, done).await?;
        tx.commit().await?;
    }
    if checkpoint["phase"] == "index" {
        // Also after a cancel: the collection keeps its index.
        build_index(state, &loaded).await?;
    } else if loaded.collection.index.seals() && matches!(outcome, Outcome::Completed) {
        // The import ends when its rows are in graphs: this worker seals the rest and builds
        // beside the merges.
        super::segments::index_all(ctx, &loaded).await?;
    }
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    // Also after a fast import, whose segment is indexed already: the merge job sums the text
    // statistics' deltas (one set a batch), which every text search reads.
    crate::jobs::store::enqueue_merge(&tx, tenant, loaded.collection.id, &name).await?;
    ctx.checkpoint(&tx, &mark(json!({"phase": "done", "fast": fast}), embedded), done)
        .await?;
    tx.commit().await?;
    state.jobs.wake();
    crate::knowledge::import::drop_staging(state, &ctx.job.params).await?;
    Ok(outcome)
}

/// `checkpoint` with the count of embedded records, for text imports.
fn mark(mut checkpoint: serde_json::Value, embedded: Option<i64>) -> serde_json::Value {
    if let (Some(n), Some(map)) = (embedded, checkpoint.as_object_mut()) {
        map.insert("embedded".into(), n.into());
    }
    checkpoint
}

/// Gives the loaded rows of a fast import (an IVFFlat collection's) their index again, on the
/// collection's one segment. Not concurrently (a resumed job builds it again): the rows' first
/// index, built with the configured memory and parallel maintenance workers. Then statistics
/// for the planner.
pub(super) async fn build_index(state: &AppState, loaded: &Loaded) -> Result<(), ApiError> {
    let open = collections::load_alone(state, loaded.tenant, &loaded.collection.name)
        .await?
        .open_segment;
    super::segments::build_segment_index(state, loaded, open, super::segments::Build::Locked).await?;
    super::maintain::run_alone(state, &[format!("ANALYZE {}", loaded.tables.chunks)]).await?;
    Ok(())
}

/// The collection's open segment, read with its registry row locked (as every writer does, and
/// as a seal does before it opens the next): the batch's rows go there.
async fn open_segment(tx: &Transaction<'_>, loaded: &Loaded) -> Result<i32, ApiError> {
    Ok(tx
        .query_one(
            "SELECT open_segment FROM collections WHERE id = $1 FOR UPDATE",
            &[&loaded.collection.id],
        )
        .await?
        .try_get(0)?)
}

/// The next batch's last line, or `None` when all are written.
async fn batch_end(tx: &Transaction<'_>, staging: &str, after: i64, size: i64) -> Result<Option<i64>, ApiError> {
    Ok(tx
        .query_one(
            &format!("SELECT max(line) FROM (SELECT line FROM {staging} WHERE line > $1 ORDER BY line LIMIT $2) s"),
            &[&after, &size],
        )
        .await?
        .try_get(0)?)
}

/// What the replaced documents of a batch held, for the collection's counters.
struct Replaced {
    ids: Vec<String>,
    created: Vec<DateTime<Utc>>,
    docs: i64,
    chunks: i64,
    bytes: i64,
}

/// Deletes the stored documents whose ids are among `ids` (their chunks go with them).
async fn delete_existing(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    ids_sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Replaced, ApiError> {
    let rows = tx
        .query(
            &format!(
                "DELETE FROM {} d WHERE d.id IN ({ids_sql}) RETURNING d.id, d.created_at, d.chunk_count, d.bytes",
                loaded.tables.docs
            ),
            params,
        )
        .await?;
    let mut r = Replaced {
        ids: vec![],
        created: vec![],
        docs: 0,
        chunks: 0,
        bytes: 0,
    };
    for row in rows {
        r.ids.push(row.try_get(0)?);
        r.created.push(row.try_get(1)?);
        r.docs += 1;
        r.chunks += i64::from(row.try_get::<_, i32>(2)?);
        r.bytes += row.try_get::<_, i64>(3)?;
    }
    Ok(r)
}

async fn finish_batch(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    replaced: &Replaced,
    added: (i64, i64, i64),
    fast: bool,
) -> Result<(), ApiError> {
    if !fast {
        // The open segment fills as a burst of writes would: merges seal it as it goes.
        crate::jobs::store::enqueue_merge(tx, loaded.tenant, loaded.collection.id, &loaded.collection.name).await?;
    }
    let (docs, chunks, bytes) = (
        added.0 - replaced.docs,
        added.1 - replaced.chunks,
        added.2 - replaced.bytes,
    );
    write_rows::check_quota(tx, loaded.tenant, docs, bytes).await?;
    tx.execute(
        "UPDATE collections SET document_count = document_count + $2, chunk_count = chunk_count + $3, \
         stored_bytes = stored_bytes + $4, updated_at = now() WHERE id = $1",
        &[&loaded.collection.id, &docs, &chunks, &bytes],
    )
    .await?;
    Ok(())
}

/// Bring-your-own records: a batch moves from staging into the collection in SQL alone.
/// Returns false when it stopped for a cancel.
async fn load_vectors(
    ctx: &JobCtx,
    loaded: &Loaded,
    staging: &str,
    mut after: i64,
    fast: bool,
    done: &mut i64,
) -> Result<bool, ApiError> {
    let (docs, chunks) = (&loaded.tables.docs, &loaded.tables.chunks);
    loop {
        if ctx.cancelled() {
            return Ok(false);
        }
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        let Some(last) = batch_end(&tx, staging, after, VECTOR_BATCH).await? else {
            tx.commit().await?;
            return Ok(true);
        };
        let segment = open_segment(&tx, loaded).await?;
        let replaced = delete_existing(
            &tx,
            loaded,
            &format!("SELECT id FROM {staging} WHERE line > $1 AND line <= $2"),
            &[&after, &last],
        )
        .await?;
        let added = tx
            .query_one(
                &format!(
                    "WITH ins AS (INSERT INTO {docs} (tenant_id, id, text, metadata, content_hash, chunk_count, bytes, created_at, updated_at) \
                       SELECT $3, s.id, s.text, s.metadata, s.hash, 1, s.bytes, coalesce(o.created_at, now()), now() \
                       FROM {staging} s LEFT JOIN unnest($4::text[], $5::timestamptz[]) o(id, created_at) ON o.id = s.id \
                       WHERE s.line > $1 AND s.line <= $2 RETURNING bytes) \
                     SELECT count(*), coalesce(sum(bytes), 0)::int8 FROM ins"
                ),
                &[&after, &last, &loaded.tenant, &replaced.ids, &replaced.created],
            )
            .await?;
        let (n, bytes): (i64, i64) = (added.try_get(0)?, added.try_get(1)?);
        tx.execute(
            &format!(
                "INSERT INTO {chunks} (tenant_id, document_id, chunk_index, text, start_char, end_char, metadata, \
                   created_at, updated_at, embedding, segment) \
                 SELECT $3, s.id, 0, s.text, 0, char_length(s.text), s.metadata, coalesce(o.created_at, now()), now(), \
                   s.embedding, $6 \
                 FROM {staging} s LEFT JOIN unnest($4::text[], $5::timestamptz[]) o(id, created_at) ON o.id = s.id \
                 WHERE s.line > $1 AND s.line <= $2"
            ),
            &[
                &after,
                &last,
                &loaded.tenant,
                &replaced.ids,
                &replaced.created,
                &segment,
            ],
        )
        .await?;
        finish_batch(&tx, loaded, &replaced, (n, n, bytes), fast).await?;
        *done += n;
        after = last;
        ctx.checkpoint(&tx, &json!({"phase": "load", "line": after, "fast": fast}), *done)
            .await?;
        tx.commit().await?;
        ctx.count(n as u64);
    }
}

/// A batch of staged text records: their lines and their documents, index for index.
#[derive(Default)]
struct TextBatch {
    lines: Vec<i64>,
    docs: Vec<Doc>,
}

async fn read_texts(ctx: &JobCtx, loaded: &Loaded, staging: &str, after: i64) -> Result<TextBatch, ApiError> {
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT line, id, text, metadata, hash, bytes FROM {staging} WHERE line > $1 ORDER BY line LIMIT $2"
            ),
            &[&after, &TEXT_BATCH],
        )
        .await?;
    tx.commit().await?;
    let mut batch = TextBatch::default();
    for r in &rows {
        batch.lines.push(r.try_get(0)?);
        batch.docs.push(Doc {
            id: r.try_get(1)?,
            text: r.try_get(2)?,
            metadata: r.try_get(3)?,
            chunking: loaded.collection.chunking,
            own_vector: None,
            hash: r.try_get(4)?,
            bytes: r.try_get(5)?,
        });
    }
    Ok(batch)
}

/// Reads and embeds the batch after `after` (documents whose stored text is the same are not
/// embedded again).
async fn next_text_batch(
    ctx: &JobCtx,
    loaded: &Loaded,
    staging: &str,
    after: i64,
) -> Result<(TextBatch, std::collections::HashMap<usize, Prepared>), ApiError> {
    let batch = read_texts(ctx, loaded, staging, after).await?;
    let docs = &batch.docs;
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    let stored: std::collections::HashMap<String, Vec<u8>> = {
        let mut client = ctx.state.pool.get().await?;
        let tx = tenant_tx(&mut client, loaded.tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT id, content_hash FROM {} WHERE id = ANY($1)", loaded.tables.docs),
                &[&ids],
            )
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, ApiError>>()?
    };
    let to_embed: Vec<usize> = (0..docs.len())
        .filter(|&i| stored.get(&docs[i].id) != Some(&docs[i].hash))
        .collect();
    let prepared = ingest::prepare(&ctx.state, docs, &to_embed)
        .await
        .map_err(|e| match e {
            ApiError::InvalidDocument { index, id, message } => ApiError::InvalidRecord {
                line: batch.lines.get(index).map_or(0, |&l| l as u64),
                id: Some(id),
                message,
            },
            other => other,
        })?;
    Ok((batch, prepared))
}

/// Text records: embedded a batch at a time, the next batch's embedding running while this
/// batch is written. Returns false when it stopped for a cancel.
async fn load_texts(
    ctx: &JobCtx,
    loaded: &Loaded,
    staging: &str,
    after: i64,
    fast: bool,
    (done, embedded): (&mut i64, &mut i64),
) -> Result<bool, ApiError> {
    let mut current = next_text_batch(ctx, loaded, staging, after).await?;
    loop {
        let (batch, prepared) = current;
        let Some(&last) = batch.lines.last() else {
            return Ok(true);
        };
        if ctx.cancelled() {
            return Ok(false);
        }
        let write = write_texts(
            ctx,
            loaded,
            &batch.docs,
            prepared,
            last,
            fast,
            (&mut *done, &mut *embedded),
        );
        let (written, next) = tokio::join!(write, next_text_batch(ctx, loaded, staging, last));
        written?;
        current = next?;
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_texts(
    ctx: &JobCtx,
    loaded: &Loaded,
    docs: &[Doc],
    prepared: std::collections::HashMap<usize, Prepared>,
    last: i64,
    fast: bool,
    (done, embedded): (&mut i64, &mut i64),
) -> Result<(), ApiError> {
    let mut client = ctx.state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    // Documents with unchanged text only take the new metadata.
    for (i, doc) in docs.iter().enumerate() {
        if !prepared.contains_key(&i) {
            tx.execute(
                &format!(
                    "UPDATE {} SET metadata = $2, updated_at = now() WHERE id = $1",
                    loaded.tables.docs
                ),
                &[&doc.id, &doc.metadata],
            )
            .await?;
            tx.execute(
                &format!(
                    "UPDATE {} SET metadata = $2, updated_at = now() WHERE document_id = $1",
                    loaded.tables.chunks
                ),
                &[&doc.id, &doc.metadata],
            )
            .await?;
        }
    }
    let ids: Vec<&str> = (0..docs.len())
        .filter(|i| prepared.contains_key(i))
        .map(|i| docs[i].id.as_str())
        .collect();
    let replaced = delete_existing(&tx, loaded, "SELECT unnest($1::text[])", &[&ids]).await?;
    let now: DateTime<Utc> = tx.query_one("SELECT now()", &[]).await?.try_get(0)?;
    let mut rows = ChunkRows::default();
    let (mut n, mut chunk_total, mut bytes) = (0i64, 0i64, 0i64);
    for (i, doc) in docs.iter().enumerate() {
        let Some(prep) = prepared.get(&i) else { continue };
        let created = replaced
            .ids
            .iter()
            .position(|id| id == &doc.id)
            .map_or(now, |p| replaced.created[p]);
        let chunk_count = i32::try_from(prep.chunks.len()).unwrap_or(i32::MAX);
        tx.execute(
            &format!(
                "INSERT INTO {} (tenant_id, id, text, metadata, content_hash, chunk_count, bytes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                loaded.tables.docs
            ),
            &[&loaded.tenant, &doc.id, &doc.text, &doc.metadata, &doc.hash, &chunk_count, &doc.bytes, &created, &now],
        )
        .await?;
        rows.add(doc, prep, created, now);
        n += 1;
        chunk_total += i64::from(chunk_count);
        bytes += doc.bytes;
    }
    let segment = open_segment(&tx, loaded).await?;
    rows.insert(&tx, loaded, loaded.tenant, segment).await?;
    finish_batch(&tx, loaded, &replaced, (n, chunk_total, bytes), fast).await?;
    *done += docs.len() as i64;
    *embedded += n;
    ctx.checkpoint(
        &tx,
        &json!({"phase": "load", "line": last, "fast": fast, "embedded": *embedded}),
        *done,
    )
    .await?;
    tx.commit().await?;
    ctx.count(docs.len() as u64);
    Ok(())
}
