//! HTTP handlers of a tenant's API keys (`/v1/tenants/{id}/keys`): extract, authorize, call the
//! tenancy plane's service.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::state::AppState;
use crate::tenancy::keys::{self, ApiKeyList, CreateApiKey, CreatedApiKey, KeyListParams};

/// Creates an API key for the tenant (owner or admin). The key is returned once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/keys", tag = "tenants", request_body = CreateApiKey,
    params(("id" = Uuid, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedApiKey, links(
            ("RevokeKey" = (operation_id = "revoke_key",
                parameters(("id" = "$request.path.id"), ("key_id" = "$response.body#/id")))),
            ("ListKeys" = (operation_id = "list_keys", parameters(("id" = "$request.path.id")))),
        )),
        (status = 400, description = "`validation_failed`: name too long; `invalid_request`: e.g. role `admin`", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn create_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let tenant = id.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
    let key = keys::create(&state, &principal, tenant, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(key))
}

/// Lists the tenant's keys: prefixes, roles, last use; never the secrets (owner or admin).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/keys", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id"), KeyListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys, oldest first", body = ApiKeyList),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn list_keys(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    query: web::Query<KeyListParams>,
) -> Result<web::Json<ApiKeyList>, ApiError> {
    let tenant = id.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
    Ok(web::Json(keys::list(&state, tenant, &query).await?))
}

/// Revokes a key; requests with it fail with 401 from now on (owner or admin).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/keys/{key_id}", tag = "tenants",
    params(("id" = Uuid, Path, description = "Tenant id"), ("key_id" = Uuid, Path, description = "Key id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`: no such active key in this tenant", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, key_id) = path.into_inner();
    principal.require_tenant(tenant, Role::Owner)?;
    keys::revoke(&state, &principal, tenant, key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
