//! HTTP handler of `/v1/audit` (reading the audit log): extract, authorize, call the tenancy
//! plane's service.

use actix_web::web;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::tenancy::audit_log::{self, AuditList, AuditParams};

/// The tenant's audit log, newest first (owners, or the admin naming `tenant_id`).
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit", params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditList),
        (status = 400, description = "`validation_failed`, `invalid_request`: bad filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs owner", body = ErrorBody),
        (status = 404, description = "`not_found`: `tenant_id` names a tenant other than the credential's own", body = ErrorBody),
    )
)]
pub async fn list_audit(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<AuditParams>,
) -> Result<web::Json<AuditList>, ApiError> {
    let tenant = principal.acting_tenant(query.tenant_id)?;
    principal.require_tenant(tenant, Role::Owner)?;
    Ok(web::Json(audit_log::list(&state, tenant, &query).await?))
}
