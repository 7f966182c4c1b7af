//! Request middleware: request id, tracing span, metrics, access log, and a last line of defence
//! that turns any non-JSON error response (e.g. actix's own 405) into the API's JSON error shape.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use tracing::Instrument;

use crate::auth::RequestTenant;
use crate::error::ApiError;
use crate::request_id;
use crate::state::AppState;

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request_id::from_header(req.headers().get(request_id::HEADER));
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let started = Instant::now();

    // Handlers and extractors turn their errors into responses themselves; an `Err` here can
    // only come from actix internals, and actix renders it. The request was moved into the
    // call (actix requires it not to be cloned before routing), so it is passed on as is.
    let body_limit = state.as_ref().map(|s| s.body_limit).unwrap_or_default();
    let (res, db_time) = crate::db::pool::measure(
        request_id::scope(id.clone(), async {
            let res = next.call(req).await?.map_into_boxed_body();
            Ok::<_, actix_web::Error>(ensure_json_error(res, body_limit).await)
        })
        .instrument(span.clone()),
    )
    .await;
    let mut res = res?;

    let status = res.status().as_u16();
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let elapsed = started.elapsed();
    let (latency_ms, db_ms) = (elapsed.as_secs_f64() * 1000.0, db_time.as_secs_f64() * 1000.0);
    if let Some(state) = &state {
        state
            .metrics
            .observe_request(&method, &route, status, elapsed.as_secs_f64());
        state
            .metrics
            .db_time
            .with_label_values(&[&method, &route])
            .observe(db_time.as_secs_f64());
        if let (Some(replicas), Some(tenant)) = (&state.replicas, res.request().extensions().get::<RequestTenant>()) {
            if is_write(&method, &route) {
                replicas.wrote(tenant.0);
            }
        }
        if latency_ms >= state.slow_request_ms {
            span.in_scope(|| tracing::warn!(status, route = %route, latency_ms, db_ms, "slow request"));
        }
    }
    span.in_scope(|| tracing::info!(status, route = %route, latency_ms, db_ms, "request completed"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(request_id::HEADER),
            value,
        );
    }
    Ok(res)
}

/// Whether a request may have written tenant data: everything but reads and the read-only POSTs
/// (searches and the context call).
fn is_write(method: &str, route: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS") && !route.ends_with("/search") && !route.ends_with("/context")
}

async fn ensure_json_error(res: ServiceResponse<BoxBody>, body_limit: usize) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let (req, response) = res.into_parts();
    let allow = response.headers().get(ALLOW).cloned();
    let text = actix_web::body::to_bytes(response.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let err = match status {
        StatusCode::NOT_FOUND => ApiError::RouteNotFound { method, path },
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            method,
            path,
            allow: allow
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: body_limit },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ApiError::InvalidCredentials(or_default(text, "authentication required")),
        StatusCode::FORBIDDEN => ApiError::Forbidden(or_default(text, "forbidden")),
        s if s.is_server_error() => ApiError::Internal(anyhow::anyhow!("{status}: {text}")),
        _ => ApiError::InvalidRequest(or_default(text, status.canonical_reason().unwrap_or("bad request"))),
    };
    // Keep the original status: the rewrite changes the body's shape, not the outcome.
    let mut response = HttpResponse::build(status);
    if let Some(allow) = allow {
        response.insert_header((ALLOW, allow));
    }
    let response = response.json(err.body());
    if status.is_server_error() {
        let _ = err.error_response(); // logs the internal error
    }
    ServiceResponse::new(req, response)
}

fn or_default(text: String, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}
