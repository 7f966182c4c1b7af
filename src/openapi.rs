//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes::{audit, auth, docs, embeddings, system, tenants};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onebase",
        description = "One server and one PostgreSQL database for everything an AI application stores. \
            Every error is a JSON object with a stable `code`, a human `message` and the `request_id` \
            (also sent as the `x-request-id` header). Errors common to all endpoints: \
            `route_not_found` (404), `method_not_allowed` (405), `invalid_json` and `invalid_request` (400), \
            `payload_too_large` (413), `unsupported_media_type` (415), `database_unavailable` (503), \
            `internal_error` (500). Authenticated endpoints take `Authorization: Bearer <credential>`: \
            an API key (`ob_...`), an access token from `/v1/auth/login`, or the admin key."
    ),
    paths(
        system::health, system::ready, system::metrics, docs::openapi_json, docs::docs_redirect,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::update_tenant,
        tenants::delete_tenant, tenants::create_key, tenants::list_keys, tenants::revoke_key,
        auth::register, auth::login, auth::me,
        audit::list_audit,
        embeddings::create_embeddings, embeddings::list_models, embeddings::get_model,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "system", description = "Health, readiness, metrics and API docs"),
        (name = "tenants", description = "Tenants (organizations) and their API keys"),
        (name = "auth", description = "Users, login and access tokens"),
        (name = "audit", description = "The audit log of every change"),
        (name = "embeddings", description = "Text embeddings from the in-process model (OpenAI-compatible)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (ob_...), an access token (JWT) or the admin key"))
                    .build(),
            ),
        );
    }
}
