//! The API's one error type.
//!
//! Every error a client can see is a variant of [`ApiError`]. Each variant has a stable
//! snake_case `code` (part of the public contract: clients match on it) and exactly one HTTP
//! status, decided in [`ApiError::status`] by a match with no catch-all arm, so adding a variant
//! forces a decision about how it is reported.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "code": "not_found",
    "message": "no route for GET /v1/nope",
    "request_id": "5b0f5e0e-2f4c-4a4b-9a57-0d8cbbd0f1a7"
}))]
pub struct ErrorBody {
    /// Stable, machine-readable error code (snake_case).
    pub code: &'static str,
    /// Human-readable explanation. Wording may change; match on `code`.
    pub message: String,
    /// The id of the request, also sent as the `x-request-id` header and logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route matches the path.
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },
    /// A resource addressed by id does not exist (or is not visible to the caller).
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// The body is not syntactically valid JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body, path or query is well-formed but does not match the expected shape.
    #[error("{0}")]
    InvalidRequest(String),
    /// A field failed validation.
    #[error("invalid `{field}`: {message}")]
    Validation { field: &'static str, message: String },
    /// The body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body is not sent as `application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// No `Authorization: Bearer ...` header.
    #[error("authentication required: send `Authorization: Bearer <api key or access token>`")]
    MissingCredentials,
    /// A key, token, email or password that does not check out.
    #[error("{0}")]
    InvalidCredentials(String),
    /// An access token past its expiry.
    #[error("the access token has expired; log in again")]
    TokenExpired,
    /// Valid credentials without the required role.
    #[error("{0}")]
    Forbidden(String),
    /// One document of a write batch is invalid; nothing of the batch was written.
    #[error("document {index} (`{id}`): {message}")]
    InvalidDocument { index: usize, id: String, message: String },
    /// A filter that does not parse; names the clause.
    #[error("{0}")]
    InvalidFilter(#[from] FilterError),
    /// The write would take the tenant over `max_documents` or `max_storage_bytes`.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The request conflicts with existing state.
    #[error("{0}")]
    Conflict(String),

    /// An idempotency key reused with a different request.
    #[error("{0}")]
    IdempotencyConflict(String),
    /// A status change the run's lifecycle does not allow.
    #[error("{0}")]
    InvalidTransition(String),

    /// `If-Match` names another version than the current one.
    #[error("{0}")]
    VersionConflict(String),

    /// A bad line of an NDJSON import (1-based).
    #[error("line {line}{}: {message}", id.as_deref().map(|i| format!(" (`{i}`)")).unwrap_or_default())]
    InvalidRecord {
        line: u64,
        id: Option<String>,
        message: String,
    },

    #[error("{0}")]
    JobFinished(String),

    /// Why a background job could not go on (reported in the job, not as a response).
    #[error("{message}")]
    JobFailed { code: &'static str, message: String },

    /// A change a PATCH cannot make: it needs a job, started at `endpoint`.
    #[error("changing `{field}` rebuilds the collection's {what}: use POST {endpoint}, which does it in the background while search goes on")]
    NeedsJob {
        code: &'static str,
        field: &'static str,
        what: &'static str,
        endpoint: String,
    },
    /// Registration with an email that already has an account in the tenant.
    #[error("an account with this email already exists in this tenant")]
    EmailTaken,
    /// `model` names a model this server does not serve.
    #[error("model `{requested}` is not served here; this server serves `{served}`")]
    ModelNotFound { requested: String, served: String },
    /// More inputs in one embeddings request than allowed.
    #[error("{count} inputs in one request; at most {max} are allowed")]
    TooManyInputs { count: usize, max: usize },
    /// An input longer than allowed.
    #[error("input {index} is longer than {max_chars} characters")]
    InputTooLong { index: usize, max_chars: usize },
    /// The server is temporarily unable to take the request (queue full); retry later.
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u32 },
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// A bug or an unexpected failure. Details are logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RouteNotFound { .. } => "route_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotFound { .. } => "not_found",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MissingCredentials => "missing_credentials",
            ApiError::InvalidCredentials(_) => "invalid_credentials",
            ApiError::TokenExpired => "token_expired",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InvalidDocument { .. } => "invalid_document",
            ApiError::InvalidFilter(_) => "invalid_filter",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::Conflict(_) => "conflict",
            ApiError::IdempotencyConflict(_) => "idempotency_conflict",
            ApiError::InvalidTransition(_) => "invalid_transition",
            ApiError::VersionConflict(_) => "version_conflict",
            ApiError::InvalidRecord { .. } => "invalid_record",
            ApiError::JobFinished(_) => "job_finished",
            ApiError::JobFailed { code, .. } => code,
            ApiError::NeedsJob { code, .. } => code,
            ApiError::EmailTaken => "email_taken",
            ApiError::ModelNotFound { .. } => "model_not_found",
            ApiError::TooManyInputs { .. } => "too_many_inputs",
            ApiError::InputTooLong { .. } => "input_too_long",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MissingCredentials => StatusCode::UNAUTHORIZED,
            ApiError::InvalidCredentials(_) => StatusCode::UNAUTHORIZED,
            ApiError::TokenExpired => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidDocument { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidFilter(_) => StatusCode::BAD_REQUEST,
            ApiError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::IdempotencyConflict(_) => StatusCode::CONFLICT,
            ApiError::InvalidTransition(_) => StatusCode::CONFLICT,
            ApiError::VersionConflict(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::InvalidRecord { .. } => StatusCode::BAD_REQUEST,
            ApiError::JobFinished(_) => StatusCode::CONFLICT,
            ApiError::JobFailed { .. } => StatusCode::CONFLICT,
            ApiError::NeedsJob { .. } => StatusCode::CONFLICT,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::TooManyInputs { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InputTooLong { .. } => StatusCode::BAD_REQUEST,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field,
            message: message.into(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            request_id: request_id::current(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(err) => tracing::error!(error = ?err, "internal error"),
            ApiError::DatabaseUnavailable(msg) => tracing::warn!(%msg, "database unavailable"),
            _ => {}
        }
        let mut builder = HttpResponse::build(self.status());
        if let ApiError::Overloaded { retry_after_secs, .. } = self {
            builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            builder.insert_header((header::ALLOW, allow.as_str()));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        builder.json(self.body())
    }
}

/// What a request gets for U+0000 anywhere in it (a body, a path, a query string): PostgreSQL's
/// text and jsonb cannot hold it.
pub const NUL_MESSAGE: &str = "text may not contain the NUL character (\\u0000)";

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        ApiError::DatabaseUnavailable(err.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        // A closed connection means the database went away; anything the server answered with
        // is a bug until a caller maps it to a specific variant (e.g. a unique violation).
        if err.is_closed() || is_unavailable(&err) {
            return ApiError::DatabaseUnavailable(err.to_string());
        }
        // PostgreSQL text and jsonb cannot hold U+0000; the client sent one in some string.
        use tokio_postgres::error::SqlState;
        if matches!(err.code(), Some(c) if c == &SqlState::CHARACTER_NOT_IN_REPERTOIRE || c == &SqlState::UNTRANSLATABLE_CHARACTER)
        {
            return ApiError::InvalidRequest(NUL_MESSAGE.into());
        }
        ApiError::Internal(anyhow::Error::new(err))
    }
}

/// True when the database is going away or not yet back: a connection error (class 08), a
/// shutdown or crash restart terminating the session, or a start still in recovery (class 57P).
pub fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    // A socket that broke mid-request (the server process died) is an I/O error with no SQLSTATE.
    let broken =
        err.as_db_error().is_none() && std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>());
    broken
        || err.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05")
        })
}

/// True when `err` is a unique violation of the named constraint or index.
pub fn is_unique_violation(err: &tokio_postgres::Error, constraint: &str) -> bool {
    err.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}

/// True when `err` is a foreign-key violation of the named constraint.
pub fn is_fk_violation(err: &tokio_postgres::Error, constraint: &str) -> bool {
    err.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION && db.constraint() == Some(constraint)
    })
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}

/// A filter's parse error (`crate::filter`), naming the offending clause by its path in the request (`filter.$and[1].year`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid filter at `{path}`: {message}")]
pub struct FilterError {
    pub path: String,
    pub message: String,
}
