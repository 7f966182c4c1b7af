//! HTTP handlers of `/v1/auth` (users: registration, login, "who am I"): extract, authorize, call
//! the tenancy plane's service.

use actix_web::{web, HttpResponse};

use crate::api::extract::MaybePrincipal;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::state::AppState;
use crate::tenancy::users::{self, LoginRequest, Me, RegisterRequest, TokenResponse, User};

/// Creates a user. With an owner (or admin) credential: any role in that tenant. Without
/// credentials: self-registration as a reader, only into a tenant whose settings have
/// `"allow_registration": true`.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = User, links(
            ("Login" = (operation_id = "login", request_body = json!({
                "email": "$request.body#/email", "password": "$request.body#/password",
                "tenant_id": "$response.body#/tenant_id"}))),
        )),
        (status = 400, description = "`validation_failed` (weak password, bad email, missing tenant_id)", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: a credential was sent but is not valid", body = ErrorBody),
        (status = 403, description = "`forbidden`: registration closed, or the role needs an owner", body = ErrorBody),
        (status = 404, description = "`not_found`: no such tenant", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody,
            example = json!({"code": "email_taken", "message": "an account with this email already exists in this tenant"})),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    caller: MaybePrincipal,
    body: JsonObject<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    // Who may register where depends on the body and the tenant's settings: the service decides.
    let user = users::register(&state, caller.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(user))
}

/// Exchanges email and password for an access token (JWT, HS256).
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "`validation_failed`: tenant_id needed, or malformed input", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody,
            example = json!({"code": "invalid_credentials", "message": "wrong email or password"})),
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    body: JsonObject<LoginRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    Ok(web::Json(users::login(&state, body.into_inner()).await?))
}

/// Describes the calling credential.
#[utoipa::path(
    get, path = "/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`, `token_expired`", body = ErrorBody),
    )
)]
pub async fn me(state: web::Data<AppState>, principal: Principal) -> Result<web::Json<Me>, ApiError> {
    Ok(web::Json(users::me(&state, &principal).await?))
}
