//! HTTP handlers of `/v1/memories` and the context call.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::memory::context::{self, Context, ContextRequest};
use crate::memory::memories;
use crate::memory::memory_model::{
    AddMemory, Memory, MemoryEvent, MemoryFilter, MemoryHistory, MemoryHits, MemoryList, MemorySearch, MemoryWrite,
    UpdateMemory,
};
use crate::state::AppState;

/// A memory id from a path: one that is not a UUID names no memory (404).
fn memory_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound {
        resource: "memory",
        id: id.to_string(),
    })
}

/// Adds a memory to a scope (user, agent and/or run); a near-duplicate in the scope (the same
/// content, or cosine at or above the dedupe threshold) is updated instead, and the response
/// says which happened (writer).
#[utoipa::path(
    post, path = "/v1/memories", tag = "memories", request_body = AddMemory,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "`added`: a new memory", body = MemoryWrite, links(
            ("GetMemory" = (operation_id = "get_memory", parameters(("id" = "$response.body#/memory/id")))),
            ("DeleteMemory" = (operation_id = "delete_memory", parameters(("id" = "$response.body#/memory/id")))),
        )),
        (status = 200, description = "`updated` or `unchanged`: an existing memory of the scope", body = MemoryWrite),
        (status = 400, description = "`validation_failed`: no scope id, content over 10000 characters, both expires_at and ttl_seconds, a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
    )
)]
pub async fn add_memory(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<AddMemory>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let written = memories::add(&state, tenant, &principal, body.into_inner()).await?;
    Ok(match written.event {
        MemoryEvent::Added => HttpResponse::Created().json(written),
        MemoryEvent::Updated | MemoryEvent::Unchanged => HttpResponse::Ok().json(written),
    })
}

/// Lists live memories, newest first, by user, agent or run (reader).
#[utoipa::path(
    get, path = "/v1/memories", tag = "memories", params(MemoryFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of memories", body = MemoryList),
        (status = 400, description = "`validation_failed`: a bad scope id, limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn list_memories(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<MemoryFilter>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(memories::list(&state, tenant, &query).await?))
}

/// Finds a scope's memories by meaning, with a metadata filter (reader).
#[utoipa::path(
    post, path = "/v1/memories/search", tag = "memories", request_body = MemorySearch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = MemoryHits),
        (status = 400, description = "`validation_failed` / `invalid_filter`: no scope id, a bad query, k or filter", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn search_memories(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<MemorySearch>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(memories::search(&state, tenant, body.into_inner()).await?))
}

/// A live memory (reader).
#[utoipa::path(
    get, path = "/v1/memories/{id}", tag = "memories", params(("id" = Uuid, Path, description = "The memory's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The memory", body = Memory),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such memory (or the id is not a UUID), or it has expired", body = ErrorBody),
    )
)]
pub async fn get_memory(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(memories::get(&state, tenant, memory_id(&id)?).await?))
}

/// Changes a memory's content (embedded again), metadata or expiry (writer).
#[utoipa::path(
    patch, path = "/v1/memories/{id}", tag = "memories", request_body = UpdateMemory,
    params(("id" = Uuid, Path, description = "The memory's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The memory as updated", body = Memory),
        (status = 400, description = "`validation_failed`: a bad field", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such memory (or the id is not a UUID), or it has expired", body = ErrorBody),
    )
)]
pub async fn update_memory(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<UpdateMemory>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(
        HttpResponse::Ok()
            .json(memories::update(&state, tenant, &principal, memory_id(&id)?, body.into_inner()).await?),
    )
}

/// Deletes a memory and its vector; the deletion is kept in its history (writer).
#[utoipa::path(
    delete, path = "/v1/memories/{id}", tag = "memories", params(("id" = Uuid, Path, description = "The memory's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such memory (or the id is not a UUID), or it has expired", body = ErrorBody),
    )
)]
pub async fn delete_memory(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    memories::delete(&state, tenant, &principal, memory_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every add, update and delete of a memory, with the old and new content, oldest first
/// (reader).
#[utoipa::path(
    get, path = "/v1/memories/{id}/history", tag = "memories", params(("id" = Uuid, Path, description = "The memory's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changes", body = MemoryHistory),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no memory ever had this id", body = ErrorBody),
    )
)]
pub async fn memory_history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(memories::history(&state, tenant, memory_id(&id)?).await?))
}

/// One chat turn's context in one call, from one snapshot: the last messages, the user's
/// memories nearest the query, the top chunks of named collections; the query embedded once
/// (reader).
#[utoipa::path(
    post, path = "/v1/conversations/{id}/context", tag = "conversations", request_body = ContextRequest,
    params(("id" = String, Path, description = "The conversation's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The context", body = Context),
        (status = 400, description = "`validation_failed` / `invalid_filter`: a bad query, count, collection name or filter; a collection that holds your vectors", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation or collection in this tenant", body = ErrorBody),
    )
)]
pub async fn conversation_context(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: JsonObject<ContextRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(context::context(&state, tenant, &id, body.into_inner()).await?))
}
