//! The per-request id: taken from an incoming `x-request-id` header when it is a sane token,
//! otherwise generated. It is sent back on every response, attached to every log line of the
//! request (through the request's tracing span) and included in error bodies.

use actix_web::http::header::HeaderValue;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Accepts a client-supplied id only if it is short and made of token characters, so that ids
/// can be logged and echoed without escaping; anything else is replaced by a fresh UUID.
pub fn from_header(value: Option<&HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
