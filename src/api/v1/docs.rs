//! The OpenAPI document and the Swagger UI, both served by the binary (the UI's assets are
//! embedded at build time, so `/docs` works offline).

use actix_web::{web, HttpResponse};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// The OpenAPI 3.1 document describing every endpoint.
#[utoipa::path(
    get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object,
        example = json!({"openapi": "3.1.0", "info": {"title": "onebase"}})))
)]
pub async fn openapi_json(state: web::Data<crate::state::AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.openapi)
}

/// The browsable API documentation (Swagger UI, served offline by the binary).
#[utoipa::path(
    get, path = "/docs", tag = "system",
    responses((status = 308, description = "Redirects to the Swagger UI at `/docs/`"))
)]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("location", "/docs/"))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/docs/{_:.*}").config(Config::from("/openapi.json")));
}
