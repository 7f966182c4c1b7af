//! HTTP handlers of documents and search: extract, authorize, call the service.

use actix_web::{web, HttpResponse};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::filter::Filter;
use crate::http::body::JsonObject;
use crate::http::pagination::Limit;
use crate::knowledge::doc_model::{
    ChunkList, DeleteByFilter, DeleteCount, Document, DocumentList, DocumentListParams, DocumentOrder, WriteDocuments,
    WriteResult,
};
use crate::knowledge::documents::{self, DeleteTarget};
use crate::knowledge::ingest::{self, Mode};
use crate::knowledge::search;
use crate::knowledge::search_model::{MultiSearchRequest, MultiSearchResponse, SearchRequest, SearchResponse};
use crate::state::AppState;

/// Adds documents: chunked, embedded, and written with their vectors in one transaction (writer).
#[utoipa::path(
    post, path = "/v1/collections/{name}/documents", tag = "documents", request_body = WriteDocuments,
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Written: every document `created`", body = WriteResult),
        (status = 400, description = "`invalid_document` (names the document's index and id: empty text, wrong dimension, non-finite number, duplicate id...), `validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer; `quota_exceeded`: over the tenant's `max_documents` or `max_storage_bytes`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 409, description = "`conflict`: a document id exists already (names it)", body = ErrorBody),
        (status = 503, description = "`overloaded`: the embedding queue is full; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn create_documents(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<WriteDocuments>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let result = ingest::write(&state, tenant, &principal, &name, body.into_inner(), Mode::Create).await?;
    Ok(HttpResponse::Created().json(result))
}

/// Adds or replaces documents by id (writer). A document whose text and chunking are unchanged
/// is not embedded again (`unchanged`, or `updated` when only its metadata changed).
#[utoipa::path(
    put, path = "/v1/collections/{name}/documents", tag = "documents", request_body = WriteDocuments,
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Written: each document `created`, `updated` or `unchanged`", body = WriteResult),
        (status = 400, description = "`invalid_document`, `validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`, `quota_exceeded`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 409, description = "`conflict`: a document changed under this request; retry", body = ErrorBody),
        (status = 503, description = "`overloaded`: the embedding queue is full", body = ErrorBody),
    )
)]
pub async fn upsert_documents(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<WriteDocuments>,
) -> Result<web::Json<WriteResult>, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(web::Json(
        ingest::write(&state, tenant, &principal, &name, body.into_inner(), Mode::Upsert).await?,
    ))
}

/// Lists documents, filtered and paged, ordered by `order_by` (reader).
#[utoipa::path(
    get, path = "/v1/collections/{name}/documents", tag = "documents",
    params(("name" = String, Path, description = "Collection name"), DocumentListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of documents", body = DocumentList),
        (status = 400, description = "`invalid_filter` (names the clause), `validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
    )
)]
pub async fn list_documents(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    query: web::Query<DocumentListParams>,
) -> Result<web::Json<DocumentList>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let limit = Limit::parse(query.limit)?;
    let filter = match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                ApiError::InvalidFilter(crate::filter::FilterError {
                    path: "filter".into(),
                    message: format!("not JSON: {e}"),
                })
            })?;
            Some(Filter::parse(&value, "filter")?)
        }
        None => None,
    };
    if query.cursor.as_deref().is_some_and(|c| !documents::valid_cursor(c)) {
        return Err(ApiError::validation("cursor", "not a cursor returned by this endpoint"));
    }
    let order = query.order_by.unwrap_or(DocumentOrder::Id);
    let (data, next_cursor) =
        documents::list(&state, tenant, &name, filter, order, limit, query.cursor.as_deref()).await?;
    Ok(web::Json(DocumentList { data, next_cursor }))
}

/// Reads a document (reader).
#[utoipa::path(
    get, path = "/v1/collections/{name}/documents/{id}", tag = "documents",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Document id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The document", body = Document),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection or document", body = ErrorBody),
    )
)]
pub async fn get_document(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Document>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (name, id) = path.into_inner();
    Ok(web::Json(documents::get(&state, tenant, &name, &id).await?))
}

/// A document's chunks with their character offsets (reader).
#[utoipa::path(
    get, path = "/v1/collections/{name}/documents/{id}/chunks", tag = "documents",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Document id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chunks, in order", body = ChunkList),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection or document", body = ErrorBody),
    )
)]
pub async fn get_chunks(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ChunkList>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (name, id) = path.into_inner();
    Ok(web::Json(documents::chunks(&state, tenant, &name, &id).await?))
}

/// Deletes a document with its chunks and vectors, in one transaction (writer).
#[utoipa::path(
    delete, path = "/v1/collections/{name}/documents/{id}", tag = "documents",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Document id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection or document", body = ErrorBody),
    )
)]
pub async fn delete_document(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let (name, id) = path.into_inner();
    documents::delete(&state, tenant, &principal, &name, DeleteTarget::Id(&id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes the documents matching a filter, with their chunks and vectors (writer).
#[utoipa::path(
    post, path = "/v1/collections/{name}/documents/delete", tag = "documents", request_body = DeleteByFilter,
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many documents were deleted", body = DeleteCount),
        (status = 400, description = "`invalid_filter` (names the clause)", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
    )
)]
pub async fn delete_documents(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<DeleteByFilter>,
) -> Result<web::Json<DeleteCount>, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let filter = Filter::parse(&body.into_inner().filter, "filter")?;
    if filter == Filter::And(vec![]) {
        return Err(ApiError::validation(
            "filter",
            "an empty filter would delete every document: delete the collection, or name what to delete",
        ));
    }
    let deleted = documents::delete(&state, tenant, &principal, &name, DeleteTarget::Filter(&filter)).await?;
    Ok(web::Json(DeleteCount { deleted }))
}

/// Searches a collection: vector, full text or hybrid, with a filter (reader).
#[utoipa::path(
    post, path = "/v1/collections/{name}/search", tag = "search", request_body = SearchRequest,
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The hits, best first", body = SearchResponse),
        (status = 400, description = "`invalid_filter` (names the clause), `validation_failed` (no query or vector, wrong dimension, k out of range...)", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such collection", body = ErrorBody),
        (status = 503, description = "`overloaded`: the embedding queue is full", body = ErrorBody),
    )
)]
pub async fn search_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<SearchRequest>,
) -> Result<web::Json<SearchResponse>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(web::Json(
        search::search(&state, tenant, &name, body.into_inner()).await?,
    ))
}

/// Searches several of the tenant's collections in one call; the hits are merged by score and
/// labelled with their `collection` (reader).
#[utoipa::path(
    post, path = "/v1/search", tag = "search", request_body = MultiSearchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The best hits of all the collections, best first", body = MultiSearchResponse),
        (status = 400, description = "`invalid_filter`, `validation_failed` (as for one collection; or no, too many or repeated collections)", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: a named collection does not exist", body = ErrorBody),
        (status = 503, description = "`overloaded`: the embedding queue is full", body = ErrorBody),
    )
)]
pub async fn search_collections(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<MultiSearchRequest>,
) -> Result<web::Json<MultiSearchResponse>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(web::Json(search::search_many(&state, tenant, body.into_inner()).await?))
}
