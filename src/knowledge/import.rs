//! `POST /v1/collections/{name}/import`: an NDJSON body, streamed and validated line by line
//! into a staging table with binary COPY, then handed to an import job (see `import_job`).
//!
//! The staging table (`tenant_<t>.import_<job>`, UNLOGGED: it is rebuilt by re-sending the body)
//! holds every valid record before any reaches the collection, so `on_error: abort` leaves the
//! collection exactly as it was, and the job can resume from its checkpoint after a crash.

use std::collections::HashSet;

use actix_web::web;
use futures_util::StreamExt;
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::collections::{self, Loaded};
use super::ingest::{check_content, check_id, content_hash, stored_bytes};
use super::model::{validate_metadata, ChunkingSpec};
use super::write_rows;
use crate::auth::Principal;
use crate::db::{as_owner, tenant_tx};
use crate::error::ApiError;
use crate::jobs::model::{Job, JobKind, JobState, RecordError};
use crate::jobs::store::{self, NewJob};
use crate::state::AppState;

/// What an import does with a record that fails validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The whole import is refused (a 400 naming the line) and nothing is written.
    #[default]
    Abort,
    /// The record is left out and listed in the job's `errors` with its line.
    Skip,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `abort` (default) or `skip`.
    pub on_error: Option<OnError>,
}

/// One NDJSON line. `document` is accepted for `text` (ChromaDB's name for it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: Option<String>,
    #[serde(alias = "document")]
    text: Option<String>,
    embedding: Option<Vec<f64>>,
    metadata: Option<serde_json::Value>,
}

/// A valid record, as staged.
struct Staged {
    line: i64,
    id: String,
    text: String,
    metadata: serde_json::Value,
    embedding: Option<Vector>,
    hash: Vec<u8>,
    bytes: i64,
}

/// What validation needs to know, carried from batch to batch.
struct Checker {
    own_vectors: bool,
    dimension: Option<usize>,
    chunking: ChunkingSpec,
    seen: HashSet<String>,
}

impl Checker {
    fn check(&mut self, line: u64, raw: &[u8]) -> Result<Staged, RecordError> {
        let fail = |id: Option<&str>, message: String| RecordError {
            line: line as i64,
            id: id.map(str::to_string),
            message,
        };
        let rec: Record = serde_json::from_slice(raw).map_err(|e| fail(None, format!("not a valid record: {e}")))?;
        let id = rec.id.unwrap_or_else(|| Uuid::now_v7().to_string());
        let bad = |message: &str| fail(Some(&id), message.to_string());
        check_id(&id).map_err(bad)?;
        let metadata = validate_metadata("metadata", rec.metadata)
            .map_err(|e| bad(&e.to_string()))?
            .unwrap_or_else(|| serde_json::json!({}));
        let text = rec.text.unwrap_or_default();
        if text.contains('\0') {
            return Err(bad("text may not contain the NUL character (\\u0000)"));
        }
        let embedding = check_content(&text, rec.embedding, self.own_vectors, self.dimension).map_err(|e| bad(&e))?;
        if let Some(v) = &embedding {
            // The first vector fixes the dimension of a collection created without one.
            self.dimension = Some(v.len());
        }
        if !self.seen.insert(id.clone()) {
            return Err(bad("the id appears on an earlier line"));
        }
        let hash = content_hash(&text, &self.chunking, embedding.as_deref());
        let bytes = stored_bytes(&text, &metadata);
        Ok(Staged {
            line: line as i64,
            id,
            text,
            metadata,
            embedding: embedding.map(Vector::from),
            hash,
            bytes,
        })
    }
}

/// Lines of a batch with their 1-based numbers.
type Lines = Vec<(u64, Vec<u8>)>;

/// Validates a batch of lines (on a blocking thread: parsing a million vectors is CPU work).
async fn check_batch(mut checker: Checker, lines: Lines) -> Result<(Checker, Vec<Staged>, Vec<RecordError>), ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut staged = Vec::with_capacity(lines.len());
        let mut errors = vec![];
        for (line, raw) in lines {
            match checker.check(line, &raw) {
                Ok(s) => staged.push(s),
                Err(e) => errors.push(e),
            }
        }
        (checker, staged, errors)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("validating an import panicked: {e}")))
}

/// Bytes of NDJSON validated per batch.
const BATCH_BYTES: usize = 4 << 20;

pub fn staging_name(tenant: Uuid, job: Uuid) -> String {
    format!("{}.import_{}", super::ddl::schema_name(tenant), job.simple())
}

/// Drops an import's staging table, named in its job's params (checked to be one).
pub async fn drop_staging(state: &AppState, params: &serde_json::Value) -> Result<(), ApiError> {
    let Some(name) = params.get("staging").and_then(|s| s.as_str()) else {
        return Ok(());
    };
    let valid = name.len() == 7 + 32 + 8 + 32
        && name.starts_with("tenant_")
        && name[7..39].bytes().all(|b| b.is_ascii_hexdigit())
        && &name[39..47] == ".import_"
        && name[47..].bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a job names `{name}` as its staging table"
        )));
    }
    let client = state.pool.get().await?;
    client.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
    Ok(())
}

/// Receives the body into a staging table and queues the import job.
pub async fn start(
    state: &web::Data<AppState>,
    tenant: Uuid,
    principal: &Principal,
    name: &str,
    on_error: OnError,
    payload: web::Payload,
) -> Result<Job, ApiError> {
    // The job (state `receiving`) and its staging table, committed before the body is read.
    let (loaded, job_id, staging) = {
        let mut client = state.pool.get().await?;
        let tx = tenant_tx(&mut client, tenant).await?;
        let loaded = collections::load(&tx, tenant, name, true).await?;
        if let Some((id, kind)) = store::active_on(&tx, loaded.collection.id, &["import", "reembed"]).await? {
            return Err(ApiError::Conflict(format!(
                "the collection has a job in progress ({kind} {id}); wait for it or cancel it"
            )));
        }
        let job_id = store::enqueue(
            &tx,
            NewJob {
                tenant: Some(tenant),
                kind: JobKind::Import,
                state: JobState::Receiving,
                collection: Some((loaded.collection.id, name)),
                params: serde_json::json!({}),
                total: None,
            },
        )
        .await?;
        let staging = staging_name(tenant, job_id);
        tx.execute(
            "UPDATE jobs SET params = $2, heartbeat_at = now() WHERE id = $1",
            &[&job_id, &serde_json::json!({"on_error": on_error, "staging": staging})],
        )
        .await?;
        as_owner(
            &tx,
            &format!(
                "CREATE UNLOGGED TABLE {staging} (line bigint PRIMARY KEY, id text NOT NULL, text text NOT NULL, \
                   metadata jsonb NOT NULL, embedding vector, hash bytea NOT NULL, bytes bigint NOT NULL); \
                 GRANT SELECT ON {staging} TO onebase_app"
            ),
        )
        .await?;
        tx.commit().await?;
        (loaded, job_id, staging)
    };
    match receive(state, &loaded, job_id, &staging, on_error, payload).await {
        Ok(()) => {}
        Err(err) => {
            // Nothing of the import stays: no staged rows, no job.
            let cleanup = async {
                drop_staging(state, &serde_json::json!({"staging": staging})).await?;
                let client = state.pool.get().await?;
                client.execute("DELETE FROM jobs WHERE id = $1", &[&job_id]).await?;
                Ok::<_, ApiError>(())
            };
            if let Err(e) = cleanup.await {
                tracing::warn!(job = %job_id, error = %e, "cleaning up a refused import");
            }
            return Err(err);
        }
    }
    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    crate::audit::record(
        &tx,
        tenant,
        principal,
        crate::audit::Event::new("collection.import", "collection", loaded.collection.id)
            .details(serde_json::json!({"name": name, "job": job_id})),
    )
    .await?;
    let job = store::get(&tx, job_id).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(job)
}

async fn receive(
    state: &web::Data<AppState>,
    loaded: &Loaded,
    job_id: Uuid,
    staging: &str,
    on_error: OnError,
    mut payload: web::Payload,
) -> Result<(), ApiError> {
    // Its own connection, closed afterwards: an unfinished COPY must not go back to the pool.
    let client = deadpool_postgres::Object::take(state.pool.untimed().get().await?);
    let vector_type: Type = client.prepare("SELECT $1::vector").await?.params()[0].clone();
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        vector_type,
        Type::BYTEA,
        Type::INT8,
    ];
    let sink = client
        .copy_in(&format!(
            "COPY {staging} (line, id, text, metadata, embedding, hash, bytes) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);

    let mut checker = Checker {
        own_vectors: loaded.collection.embedding.model.is_none(),
        dimension: loaded.collection.embedding.dimension.map(|d| d as usize),
        chunking: loaded.collection.chunking,
        seen: HashSet::new(),
    };
    let limit = state.jobs.import_limit;
    let (mut received, mut line_no, mut staged_count, mut error_count) = (0u64, 0u64, 0i64, 0i64);
    let mut partial: Vec<u8> = vec![];
    let mut lines: Lines = vec![];
    let mut batch_bytes = 0usize;
    let mut errors: Vec<RecordError> = vec![];
    let mut ended = false;
    while !ended {
        match payload.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| ApiError::InvalidRequest(format!("reading the body: {e}")))?;
                received += chunk.len() as u64;
                if received > limit {
                    return Err(ApiError::PayloadTooLarge {
                        limit: usize::try_from(limit).unwrap_or(usize::MAX),
                    });
                }
                let mut rest: &[u8] = &chunk;
                while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
                    partial.extend_from_slice(&rest[..pos]);
                    rest = &rest[pos + 1..];
                    line_no += 1;
                    let line = std::mem::take(&mut partial);
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        batch_bytes += line.len();
                        lines.push((line_no, line));
                    }
                }
                partial.extend_from_slice(rest);
            }
            None => {
                ended = true;
                if !partial.iter().all(u8::is_ascii_whitespace) {
                    line_no += 1;
                    lines.push((line_no, std::mem::take(&mut partial)));
                }
            }
        }
        if batch_bytes < BATCH_BYTES && !ended {
            continue;
        }
        let (back, staged, bad) = check_batch(checker, std::mem::take(&mut lines)).await?;
        checker = back;
        batch_bytes = 0;
        if let Some(first) = bad.first() {
            if on_error == OnError::Abort {
                return Err(ApiError::InvalidRecord {
                    line: first.line as u64,
                    id: first.id.clone(),
                    message: first.message.clone(),
                });
            }
            error_count += bad.len() as i64;
            errors.extend(bad.into_iter().take(100usize.saturating_sub(errors.len())));
        }
        for s in staged {
            let row: [&(dyn ToSql + Sync); 7] = [&s.line, &s.id, &s.text, &s.metadata, &s.embedding, &s.hash, &s.bytes];
            writer.as_mut().write(&row).await?;
            staged_count += 1;
        }
        state
            .pool
            .get()
            .await?
            .execute("UPDATE jobs SET heartbeat_at = now() WHERE id = $1", &[&job_id])
            .await?;
    }
    if staged_count == 0 {
        return Err(ApiError::validation(
            "body",
            "the import holds no valid record (one JSON object per line)",
        ));
    }
    writer.finish().await?;
    drop(client);

    let mut client = state.pool.get().await?;
    let tx = tenant_tx(&mut client, loaded.tenant).await?;
    let fresh = collections::load(&tx, loaded.tenant, &loaded.collection.name, true).await?;
    if fresh.collection.id != loaded.collection.id {
        return Err(ApiError::Conflict(
            "the collection was deleted during the import".into(),
        ));
    }
    if let (None, Some(dim)) = (fresh.collection.embedding.dimension, checker.dimension) {
        if checker.own_vectors {
            write_rows::set_dimension(&tx, &fresh, i32::try_from(dim).unwrap_or(i32::MAX)).await?;
        }
    }
    if let Some(dim) = fresh.collection.embedding.dimension.filter(|_| checker.own_vectors) {
        if checker.dimension.is_some_and(|d| d != dim as usize) {
            return Err(ApiError::Conflict(format!(
                "the collection's dimension became {dim} during the import, unlike its records'"
            )));
        }
    }
    tx.execute(
        "UPDATE jobs SET state = 'queued', total = $2, error_count = $3, \
           errors = $4, params = params || jsonb_build_object('records', $2::int8, 'skipped', $3::int8), updated_at = now() \
         WHERE id = $1",
        &[&job_id, &staged_count, &error_count, &serde_json::to_value(&errors).map_err(anyhow::Error::new)?],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
