//! HTTP handlers of `/v1/cache`: extract, authorize, call the service.

use actix_web::{web, HttpResponse};

use crate::auth::{Principal, Role};
use crate::cache::model::{
    CacheDeleted, CacheEntry, CacheEntryList, CacheHistory, GetParams, HistoryParams, ListParams, PutEntry,
};
use crate::cache::service;
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::names::CacheKey;
use crate::state::AppState;

/// Stores a tool result under (namespace, key) and says whether it changed (writer). The same
/// data (by canonical hash: key order and whitespace do not count) refreshes `fetched_at` and
/// `expires_at` only; different data appends the previous version to the history. With `index`
/// (or one remembered from an earlier store) the text is indexed in the same transaction.
#[utoipa::path(
    put, path = "/v1/cache/{namespace}/{key}", tag = "cache", request_body = PutEntry,
    params(
        ("namespace" = String, Path, description = "1 to 64 characters: letters, digits, '_', '.', '-'", pattern = r"^[A-Za-z0-9_.-]{1,64}$"),
        ("key" = CacheKey, Path, description = "The key"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A new entry (`changed` and `created` are true)", body = CacheEntry),
        (status = 200, description = "The entry as stored now, with `changed`", body = CacheEntry),
        (status = 400, description = "`validation_failed`: a bad namespace, key, ttl, metadata or index target, or the text to index is missing", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the index collection does not exist", body = ErrorBody),
        (status = 409, description = "`conflict`: another store of the key raced this one while it was embedding; retry", body = ErrorBody),
    )
)]
pub async fn put_entry(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    body: JsonObject<PutEntry>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let (namespace, key) = path.into_inner();
    let stored = service::put(&state, tenant, &principal, &namespace, &key, body.into_inner()).await?;
    Ok(if stored.created == Some(true) {
        HttpResponse::Created().json(stored)
    } else {
        HttpResponse::Ok().json(stored)
    })
}

/// Reads an entry with its age (reader). 404 when missing, expired, or fetched longer ago than
/// `max_age_seconds`, unless `allow_stale=true` (then `stale: true` flags it).
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}", tag = "cache",
    params(
        ("namespace" = String, Path, description = "The namespace", pattern = r"^[A-Za-z0-9_.-]{1,64}$"),
        ("key" = CacheKey, Path, description = "The key"),
        GetParams,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entry", body = CacheEntry),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad parameter", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no entry (a namespace or key that breaks the naming rules has none), or it is expired or older than max_age_seconds", body = ErrorBody),
    )
)]
pub async fn get_entry(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    query: web::Query<GetParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (namespace, key) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::get(&state, tenant, &namespace, &key, &query).await?))
}

/// Deletes an entry with its history and its indexed document (writer).
#[utoipa::path(
    delete, path = "/v1/cache/{namespace}/{key}", tag = "cache",
    params(
        ("namespace" = String, Path, description = "The namespace", pattern = r"^[A-Za-z0-9_.-]{1,64}$"),
        ("key" = CacheKey, Path, description = "The key"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such entry", body = ErrorBody),
    )
)]
pub async fn delete_entry(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    let (namespace, key) = path.into_inner();
    service::delete(&state, tenant, &principal, &namespace, Some(&key)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The earlier versions of an entry, newest first (reader).
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}/history", tag = "cache",
    params(
        ("namespace" = String, Path, description = "The namespace", pattern = r"^[A-Za-z0-9_.-]{1,64}$"),
        ("key" = CacheKey, Path, description = "The key"),
        HistoryParams,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The earlier versions", body = CacheHistory),
        (status = 400, description = "`validation_failed`: a bad limit", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the key has no entry and no history", body = ErrorBody),
    )
)]
pub async fn entry_history(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    query: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    let (namespace, key) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::history(&state, tenant, &namespace, &key, &query).await?))
}

/// The entries of a namespace by when their data changed, oldest change first, optionally only
/// those changed since a time (a weekly digest of what changed upstream) (reader).
#[utoipa::path(
    get, path = "/v1/cache/{namespace}", tag = "cache",
    params(("namespace" = String, Path, description = "The namespace", pattern = r"^[A-Za-z0-9_.-]{1,64}$"), ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries", body = CacheEntryList),
        (status = 400, description = "`validation_failed` / `invalid_request`: a bad time, limit or cursor", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the namespace breaks the naming rules, so there is none such", body = ErrorBody),
    )
)]
pub async fn list_entries(
    state: web::Data<AppState>,
    principal: Principal,
    namespace: web::Path<String>,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(service::list(&state, tenant, &namespace, &query).await?))
}

/// Deletes every entry of a namespace with their history and indexed documents (writer).
#[utoipa::path(
    delete, path = "/v1/cache/{namespace}", tag = "cache",
    params(("namespace" = String, Path, description = "The namespace", pattern = r"^[A-Za-z0-9_.-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many entries were deleted", body = CacheDeleted),
        (status = 403, description = "`forbidden`: needs a writer of a tenant (not the admin key)", body = ErrorBody),
        (status = 404, description = "`not_found`: the namespace breaks the naming rules, so there is none such", body = ErrorBody),
    )
)]
pub async fn delete_namespace(
    state: web::Data<AppState>,
    principal: Principal,
    namespace: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Writer)?;
    Ok(HttpResponse::Ok().json(service::delete(&state, tenant, &principal, &namespace, None).await?))
}
