//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::routes::{docs, system};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onebase",
        description = "One server and one PostgreSQL database for everything an AI application stores. \
            Every error is a JSON object with a stable `code`, a human `message` and the `request_id` \
            (also sent as the `x-request-id` header). Errors common to all endpoints: \
            `route_not_found` (404), `method_not_allowed` (405), `invalid_json` and `invalid_request` (400), \
            `payload_too_large` (413), `unsupported_media_type` (415), `internal_error` (500)."
    ),
    paths(system::health, system::ready, system::metrics, docs::openapi_json, docs::docs_redirect),
    components(schemas(ErrorBody)),
    tags((name = "system", description = "Health, readiness, metrics and API docs"))
)]
pub struct ApiDoc;
