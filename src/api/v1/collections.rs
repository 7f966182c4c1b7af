//! HTTP handlers of `/v1/collections`: extract, authorize, call the service.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::http::pagination::PageParams;
use crate::knowledge::collections;
use crate::knowledge::model::{Collection, CreateCollection, UpdateCollection};
use crate::state::AppState;

/// Creates a collection with its tables and indexes (writer).
#[utoipa::path(
    post, path = "/v1/collections", tag = "collections", request_body = CreateCollection,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Collection, links(
            ("GetCollection" = (operation_id = "get_collection", parameters(("name" = "$response.body#/name")))),
            ("UpdateCollection" = (operation_id = "update_collection", parameters(("name" = "$response.body#/name")))),
            ("DeleteCollection" = (operation_id = "delete_collection", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "`validation_failed`: a bad name, dimension, index parameter or chunking", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`model_not_found`: `embedding.model` is not served here", body = ErrorBody),
        (status = 409, description = "`conflict`: the tenant has a collection of that name", body = ErrorBody),
    )
)]
pub async fn create_collection(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<CreateCollection>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let collection = collections::create(&state, tenant, &principal, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(collection))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub data: Vec<Collection>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the tenant's collections, oldest first (reader).
#[utoipa::path(
    get, path = "/v1/collections", tag = "collections", params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of collections", body = CollectionList),
        (status = 400, description = "`validation_failed`: bad limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
    )
)]
pub async fn list_collections(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageParams>,
) -> Result<web::Json<CollectionList>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (limit, cursor) = query.parse()?;
    let page = collections::list(&state, tenant, limit, cursor).await?;
    Ok(web::Json(CollectionList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

/// Reads a collection: counts, bytes on disk, model, index and its parameters (reader).
#[utoipa::path(
    get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The collection", body = Collection),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn get_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<web::Json<Collection>, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(web::Json(collections::get(&state, tenant, &name).await?))
}

/// Changes a collection's description, metadata or default chunking (writer). The name is the
/// collection's identifier and does not change.
#[utoipa::path(
    patch, path = "/v1/collections/{name}", tag = "collections", request_body = UpdateCollection,
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated collection", body = Collection),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`reindex_required` (a new `index` or `distance`: use `POST .../reindex`) or `reembed_required` (a new `embedding`: use `POST .../reembed`)", body = ErrorBody),
    )
)]
pub async fn update_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: JsonObject<UpdateCollection>,
) -> Result<web::Json<Collection>, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(web::Json(
        collections::update(&state, tenant, &principal, &name, body.into_inner()).await?,
    ))
}

/// Deletes a collection with every document, chunk and vector in it, in one transaction (writer).
#[utoipa::path(
    delete, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: needs a writer of a tenant", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn delete_collection(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    collections::delete(&state, tenant, &principal, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}
