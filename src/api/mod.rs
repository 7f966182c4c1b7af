//! The front doors: the actix handlers of `/v1` (in [`v1`]), and the route table, the error
//! handlers and the JSON 404 that every door shares. A handler extracts, authorizes and calls a
//! plane's service; it holds no SQL, so `/api/v2` and `/console` can sit beside `/v1` over the
//! same services. Every route is declared once in [`all`], which both registers it with actix
//! and lets a test check that the OpenAPI spec documents it.

pub mod extract;
pub mod v1;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use v1::{
    audit, auth, cache, collection_jobs, collections, conversations as memory, docs, documents, embeddings, jobs, keys,
    memories, ops, runs, system, tenants,
};

/// One registered route: its method and path (in OpenAPI's `{param}` syntax, which actix
/// shares) and how to register it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    add_to: fn(actix_web::Resource) -> actix_web::Resource,
}

macro_rules! route {
    ($method:ident, $path:literal, $handler:path) => {
        Route {
            method: stringify!($method),
            path: $path,
            add_to: |resource| resource.route(web::$method().to($handler)),
        }
    };
}

/// Every route of the API.
pub fn all() -> Vec<Route> {
    vec![
        route!(get, "/health", system::health),
        route!(get, "/ready", system::ready),
        route!(get, "/metrics", system::metrics),
        route!(get, "/openapi.json", docs::openapi_json),
        route!(get, "/docs", docs::docs_redirect),
        route!(post, "/v1/tenants", tenants::create_tenant),
        route!(get, "/v1/tenants", tenants::list_tenants),
        route!(get, "/v1/tenants/{id}", tenants::get_tenant),
        route!(patch, "/v1/tenants/{id}", tenants::update_tenant),
        route!(delete, "/v1/tenants/{id}", tenants::delete_tenant),
        route!(post, "/v1/tenants/{id}/keys", keys::create_key),
        route!(get, "/v1/tenants/{id}/keys", keys::list_keys),
        route!(delete, "/v1/tenants/{id}/keys/{key_id}", keys::revoke_key),
        route!(post, "/v1/auth/register", auth::register),
        route!(post, "/v1/auth/login", auth::login),
        route!(get, "/v1/auth/me", auth::me),
        route!(get, "/v1/audit", audit::list_audit),
        route!(post, "/v1/embeddings", embeddings::create_embeddings),
        route!(get, "/v1/models", embeddings::list_models),
        route!(get, "/v1/models/{id}", embeddings::get_model),
        route!(post, "/v1/collections", collections::create_collection),
        route!(get, "/v1/collections", collections::list_collections),
        route!(get, "/v1/collections/{name}", collections::get_collection),
        route!(patch, "/v1/collections/{name}", collections::update_collection),
        route!(delete, "/v1/collections/{name}", collections::delete_collection),
        route!(post, "/v1/collections/{name}/documents", documents::create_documents),
        route!(put, "/v1/collections/{name}/documents", documents::upsert_documents),
        route!(get, "/v1/collections/{name}/documents", documents::list_documents),
        route!(
            post,
            "/v1/collections/{name}/documents/delete",
            documents::delete_documents
        ),
        route!(get, "/v1/collections/{name}/documents/{id}", documents::get_document),
        route!(
            delete,
            "/v1/collections/{name}/documents/{id}",
            documents::delete_document
        ),
        route!(
            get,
            "/v1/collections/{name}/documents/{id}/chunks",
            documents::get_chunks
        ),
        route!(post, "/v1/collections/{name}/search", documents::search_collection),
        route!(post, "/v1/search", documents::search_collections),
        route!(
            post,
            "/v1/collections/{name}/import",
            collection_jobs::import_collection
        ),
        route!(
            post,
            "/v1/collections/{name}/reindex",
            collection_jobs::reindex_collection
        ),
        route!(
            post,
            "/v1/collections/{name}/reembed",
            collection_jobs::reembed_collection
        ),
        route!(get, "/v1/jobs", jobs::list_jobs),
        route!(get, "/v1/jobs/{id}", jobs::get_job),
        route!(delete, "/v1/jobs/{id}", jobs::cancel_job),
        route!(post, "/v1/runs", runs::create_run),
        route!(get, "/v1/runs", runs::list_runs),
        route!(get, "/v1/runs/{id}", runs::get_run),
        route!(patch, "/v1/runs/{id}", runs::update_run),
        route!(delete, "/v1/runs/{id}", runs::delete_run),
        route!(post, "/v1/runs/{id}/steps", runs::create_step),
        route!(get, "/v1/runs/{id}/steps", runs::list_steps),
        route!(post, "/v1/runs/{id}/artifacts", runs::create_artifact),
        route!(get, "/v1/runs/{id}/artifacts", runs::list_artifacts),
        route!(post, "/v1/runs/{id}/llm-calls", runs::create_llm_call),
        route!(get, "/v1/runs/{id}/llm-calls", runs::list_llm_calls),
        route!(get, "/v1/runs/{id}/stats", runs::run_stats),
        route!(get, "/v1/usage", runs::get_usage),
        route!(get, "/v1/stats", ops::tenant_stats),
        route!(get, "/v1/admin/stats", ops::database_stats),
        route!(get, "/v1/admin/retention", ops::retention),
        route!(put, "/v1/cache/{namespace}/{key}", cache::put_entry),
        route!(get, "/v1/cache/{namespace}/{key}", cache::get_entry),
        route!(delete, "/v1/cache/{namespace}/{key}", cache::delete_entry),
        route!(get, "/v1/cache/{namespace}/{key}/history", cache::entry_history),
        route!(get, "/v1/cache/{namespace}", cache::list_entries),
        route!(delete, "/v1/cache/{namespace}", cache::delete_namespace),
        route!(post, "/v1/conversations", memory::create_conversation),
        route!(get, "/v1/conversations", memory::list_conversations),
        route!(get, "/v1/conversations/{id}", memory::get_conversation),
        route!(patch, "/v1/conversations/{id}", memory::update_conversation),
        route!(delete, "/v1/conversations/{id}", memory::delete_conversation),
        route!(post, "/v1/conversations/{id}/messages", memory::append_messages),
        route!(get, "/v1/conversations/{id}/messages", memory::list_messages),
        route!(patch, "/v1/conversations/{id}/messages/{mid}", memory::update_message),
        route!(
            post,
            "/v1/conversations/{id}/messages/search",
            memory::search_conversation
        ),
        route!(post, "/v1/messages/search", memory::search_messages),
        route!(
            put,
            "/v1/conversations/{id}/agents/{agent_name}/state",
            memory::put_agent_state
        ),
        route!(
            get,
            "/v1/conversations/{id}/agents/{agent_name}/state",
            memory::get_agent_state
        ),
        route!(put, "/v1/conversations/{id}/workflow", memory::put_workflow),
        route!(get, "/v1/conversations/{id}/workflow", memory::get_workflow),
        route!(get, "/v1/conversations/{id}/workflow/history", memory::workflow_history),
        route!(delete, "/v1/users/{user_id}/data", memory::erase_user),
        route!(post, "/v1/conversations/{id}/context", memories::conversation_context),
        route!(post, "/v1/memories", memories::add_memory),
        route!(get, "/v1/memories", memories::list_memories),
        route!(post, "/v1/memories/search", memories::search_memories),
        route!(get, "/v1/memories/{id}", memories::get_memory),
        route!(patch, "/v1/memories/{id}", memories::update_memory),
        route!(delete, "/v1/memories/{id}", memories::delete_memory),
        route!(get, "/v1/memories/{id}/history", memories::memory_history),
    ]
}

/// Registers the routes, the docs UI, the body/path/query error handlers and the JSON 404.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(move |err, _req| json_error(err, body_limit).into()),
    )
    .app_data(web::PayloadConfig::default().limit(body_limit))
    .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(err).into()))
    .app_data(web::QueryConfig::default().error_handler(|err, _req| query_error(err).into()));
    // One resource per path, holding all of its methods, so that a known path with an unknown
    // method is a 405 rather than a 404. Sorted, literal segments come before `{param}` ones
    // ('{' sorts after letters), so `/x/keys` is matched before `/x/{id}`.
    let routes = all();
    let mut paths: Vec<&'static str> = routes.iter().map(|r| r.path).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        let allow = allowed_methods(&routes, path);
        let resource = routes
            .iter()
            .filter(|r| r.path == path)
            .fold(web::resource(path), |resource, route| (route.add_to)(resource));
        cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
            let allow = allow.clone();
            async move { method_not_allowed(req, allow) }
        })));
    }
    docs::configure(cfg);
    cfg.default_service(web::to(route_not_found));
}

/// U+0000 in the path or the query string (`%00`) is refused like one in a body
/// ([`crate::http::body::JsonObject`]): no field may hold it, whichever way it came.
pub async fn refuse_nul(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let uri = req.uri();
    if uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00")) {
        return Err(ApiError::InvalidRequest(crate::error::NUL_MESSAGE.into()).into());
    }
    next.call(req).await
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}

/// The value of the `Allow` header for `path`: its methods, upper-case, in a fixed order.
fn allowed_methods(routes: &[Route], path: &str) -> String {
    let mut methods: Vec<String> = routes
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method.to_uppercase())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// 405 with the `Allow` header RFC 9110 requires, naming the methods the path does support.
fn method_not_allowed(req: HttpRequest, allow: String) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
        allow,
    })
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge { limit }
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(err) => crate::http::body::body_error(&err),
        other => ApiError::InvalidRequest(format!("could not read the request body: {other}")),
    }
}

fn path_error(err: PathError) -> ApiError {
    ApiError::InvalidRequest(format!("invalid path parameter: {err}"))
}

fn query_error(err: QueryPayloadError) -> ApiError {
    let id_error = match &err {
        QueryPayloadError::Deserialize(inner) => crate::names::from_deserialize_error(&inner.to_string()),
        _ => None,
    };
    id_error.unwrap_or_else(|| ApiError::InvalidRequest(format!("invalid query string: {err}")))
}
