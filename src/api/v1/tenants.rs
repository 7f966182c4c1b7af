//! HTTP handlers of `/v1/tenants`: extract, authorize, call the tenancy plane's service. Their
//! API keys are in `keys.rs`.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::http::pagination::PageParams;
use crate::state::AppState;
use crate::tenancy::tenants::{self, CreateTenant, Tenant, TenantList, UpdateTenant};

/// Creates a tenant (admin only).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Tenant, links(
            ("GetTenant" = (operation_id = "get_tenant", parameters(("id" = "$response.body#/id")))),
            ("UpdateTenant" = (operation_id = "update_tenant", parameters(("id" = "$response.body#/id")))),
            ("DeleteTenant" = (operation_id = "delete_tenant", parameters(("id" = "$response.body#/id")))),
            ("CreateKey" = (operation_id = "create_key", parameters(("id" = "$response.body#/id")))),
            ("ListKeys" = (operation_id = "list_keys", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`validation_failed`, `invalid_json`, `invalid_request`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
    )
)]
pub async fn create_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let tenant = tenants::create(&state, &principal, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(tenant))
}

/// Lists all tenants (admin only), oldest first.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 400, description = "`validation_failed`: bad limit or cursor", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
    )
)]
pub async fn list_tenants(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageParams>,
) -> Result<web::Json<TenantList>, ApiError> {
    principal.require_admin()?;
    let (limit, cursor) = query.parse()?;
    Ok(web::Json(tenants::list(&state, limit, cursor).await?))
}

/// Reads a tenant: the admin reads any, a tenant's own credentials read their tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 404, description = "`not_found` (also for other tenants' ids)", body = ErrorBody),
    )
)]
pub async fn get_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<web::Json<Tenant>, ApiError> {
    let id = id.into_inner();
    principal.require_tenant(id, Role::Reader)?;
    Ok(web::Json(tenants::get(&state, id).await?))
}

/// Updates a tenant. Owners may change `name` and `settings`; usage limits need the admin key.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants", request_body = UpdateTenant,
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated tenant", body = Tenant),
        (status = 400, description = "`validation_failed`, `invalid_json`, `invalid_request`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an owner, or limits changed without the admin key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn update_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<UpdateTenant>,
) -> Result<web::Json<Tenant>, ApiError> {
    let id = id.into_inner();
    principal.require_tenant(id, Role::Owner)?;
    Ok(web::Json(
        tenants::update(&state, &principal, id, body.into_inner()).await?,
    ))
}

/// Deletes a tenant and all of its data in one transaction (admin only).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with every row of the tenant"),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the admin key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    tenants::delete(&state, &principal, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
