//! The extractors of the caller: the bearer credential read from `Authorization` and resolved
//! by [`auth::principal::resolve`](crate::auth::principal::resolve) on every request.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use crate::auth::principal::{resolve, Resolver};
use crate::auth::{Principal, RequestTenant};
use crate::error::ApiError;
use crate::state::AppState;

fn bearer(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidCredentials("malformed Authorization header".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::InvalidCredentials("the Authorization header must be `Bearer <credential>`".into()))?;
    Ok(Some(token.trim().to_string()))
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))
}

fn resolver(state: &AppState) -> Resolver<'_> {
    Resolver {
        config: &state.auth,
        key_cache: &state.key_cache,
        pool: &state.pool,
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = bearer(req).and_then(|c| c.ok_or(ApiError::MissingCredentials));
        let state = state_of(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let principal = resolve(resolver(&state), &parsed?).await?;
            if let Some(tenant) = principal.tenant_id {
                // For the replica router (`observe` notes the tenant's writes).
                req.extensions_mut().insert(RequestTenant(tenant));
            }
            Ok(principal)
        })
    }
}

/// A principal when the request carries credentials, `None` when it carries none. Invalid
/// credentials are still an error: a bad token never silently downgrades to anonymous.
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequest for MaybePrincipal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = bearer(req);
        let state = state_of(req);
        Box::pin(async move {
            match parsed? {
                None => Ok(MaybePrincipal(None)),
                Some(credential) => Ok(MaybePrincipal(Some(resolve(resolver(&*state?), &credential).await?))),
            }
        })
    }
}
