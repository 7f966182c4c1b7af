//! HTTP handlers of the collection jobs: import, reindex, re-embed. Each answers 202 with the
//! job; `GET /v1/jobs/{id}` follows it.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::jobs::model::Job;
use crate::knowledge::import::{self, ImportParams};
use crate::knowledge::model::{Distance, IndexSpec};
use crate::state::AppState;

fn accepted(job: Job) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((actix_web::http::header::LOCATION, format!("/v1/jobs/{}", job.id)))
        .json(job)
}

/// Imports NDJSON records into the collection as a job (writer).
///
/// The body is one JSON object per line: `{"id", "text", "metadata"}` for a collection that
/// embeds its text, `{"id", "embedding", "text"?, "metadata"?}` for bring-your-own vectors
/// (`document` is accepted for `text`, as in a ChromaDB export). It is streamed, validated line
/// by line and staged before anything reaches the collection, up to the server's import limit
/// (`ONEBASE_IMPORT_LIMIT`, 64 GiB by default), far beyond the JSON body limit. Existing ids are
/// replaced, as by `PUT .../documents`. Under `on_error=abort` (the default) the first bad line
/// refuses the whole import with a 400 naming it; under `skip` bad lines are left out and
/// listed in the job's `errors`. Into an empty collection the vector index is built once at
/// the end, with parallel workers.
#[utoipa::path(
    post, path = "/v1/collections/{name}/import", tag = "jobs",
    params(("name" = String, Path, description = "The collection's name"), ImportParams),
    request_body(content = String, content_type = "application/x-ndjson",
        example = json!("{\"id\": \"a\", \"embedding\": [0.1, 0.2, 0.3], \"metadata\": {\"tag\": 1}}\n{\"id\": \"b\", \"embedding\": [0.3, 0.2, 0.1]}\n")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The import job, queued (`Location: /v1/jobs/{id}`)", body = Job),
        (status = 400, description = "`invalid_record`: a bad line under `on_error=abort` (nothing is written); `validation_failed`: no valid record", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 409, description = "`conflict`: an import or re-embed of the collection is in progress", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the import limit", body = ErrorBody),
    )
)]
pub async fn import_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    query: web::Query<ImportParams>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let on_error = query.on_error.unwrap_or_default();
    let job = import::start(&state, tenant, &principal, &name, on_error, payload).await?;
    Ok(accepted(job))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"index": {"type": "hnsw", "m": 24, "ef_construction": 100}}))]
pub struct ReindexRequest {
    /// The new index (as in `POST /v1/collections`).
    pub index: IndexSpec,
    /// A new distance (default: the collection's).
    pub distance: Option<Distance>,
}

/// Rebuilds the collection's vector index with a new type, parameters or distance (writer).
///
/// The new index is built beside the old one (`CREATE INDEX CONCURRENTLY`) while searches use
/// the old one and writes go on; then one transaction swaps them and updates the collection.
#[utoipa::path(
    post, path = "/v1/collections/{name}/reindex", tag = "jobs", request_body = ReindexRequest,
    params(("name" = String, Path, description = "The collection's name")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The reindex job, queued", body = Job),
        (status = 400, description = "`validation_failed`: a bad index parameter", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 409, description = "`conflict`: an import, reindex or re-embed of the collection is in progress", body = ErrorBody),
    )
)]
pub async fn reindex_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<ReindexRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let req = body.into_inner();
    let job =
        crate::knowledge::reindex::start_reindex(&state, tenant, &principal, &name, req.index, req.distance).await?;
    Ok(accepted(job))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "all-MiniLM-L6-v2"}))]
pub struct ReembedRequest {
    /// A model this server serves (`GET /v1/models`).
    #[schema(min_length = 1, max_length = 200)]
    pub model: String,
}

/// Re-embeds every chunk with a model and makes it the collection's (writer).
///
/// The new vectors are written beside the old ones and indexed; search keeps answering from
/// the old vectors until one transaction swaps them in. A bring-your-own collection whose
/// chunks all have text becomes one that onebase embeds.
#[utoipa::path(
    post, path = "/v1/collections/{name}/reembed", tag = "jobs", request_body = ReembedRequest,
    params(("name" = String, Path, description = "The collection's name")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The re-embed job, queued", body = Job),
        (status = 400, description = "`validation_failed`: the model is not served here", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 409, description = "`conflict`: another job on the collection is in progress, or chunks without text", body = ErrorBody),
    )
)]
pub async fn reembed_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<ReembedRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let job = crate::knowledge::reembed::start(&state, tenant, &principal, &name, &body.into_inner().model).await?;
    Ok(accepted(job))
}
