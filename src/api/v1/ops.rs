//! Handlers of the operations endpoints: storage statistics, retention.

use actix_web::{web, HttpResponse};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::ops::retention::RetentionView;
use crate::ops::stats::{self, DatabaseStats, TenantStats};
use crate::state::AppState;

/// The tenant's storage: per collection documents, chunks and bytes of tables and indexes; rows
/// and bytes of its conversations, messages, memories, runs, cache entries and audit log (reader).
#[utoipa::path(
    get, path = "/v1/stats", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's figures", body = TenantStats),
        (status = 401, description = "`unauthorized`: no or a bad credential", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs a tenant's credential (the admin reads `/v1/admin/stats`)", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    )
)]
pub async fn tenant_stats(state: web::Data<AppState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    let tenant = principal.data_tenant(Role::Reader)?;
    Ok(HttpResponse::Ok().json(stats::tenant(&state, tenant).await?))
}

/// The whole database (admin): size, table and index sizes, dead tuples and last
/// vacuum/analyze, cache hit ratio, connections and replication lag.
#[utoipa::path(
    get, path = "/v1/admin/stats", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The database's figures", body = DatabaseStats),
        (status = 401, description = "`unauthorized`: no or a bad credential", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin key", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    )
)]
pub async fn database_stats(state: web::Data<AppState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    Ok(HttpResponse::Ok().json(stats::database(&state).await?))
}

/// The retention rules (admin): what each deletes, the server's value, the tenants that
/// override it, and what the last sweep deleted.
#[utoipa::path(
    get, path = "/v1/admin/retention", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules and the last sweep", body = RetentionView),
        (status = 401, description = "`unauthorized`: no or a bad credential", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin key", body = ErrorBody),
        (status = 503, description = "`database_unavailable`", body = ErrorBody),
    )
)]
pub async fn retention(state: web::Data<AppState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    Ok(HttpResponse::Ok().json(crate::ops::retention::view(&state).await?))
}
