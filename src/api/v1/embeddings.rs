//! HTTP handlers of `POST /v1/embeddings` and `/v1/models`, in OpenAI's request and response
//! shape: extract, authorize, call the embeddings service (`crate::embeddings`).

use actix_web::web;

use crate::auth::{Principal, Role};
use crate::embeddings::{self, EmbeddingRequest, EmbeddingResponse, Model, ModelList};
use crate::error::{ApiError, ErrorBody};
use crate::http::body::JsonObject;
use crate::state::AppState;

/// Embeds one or more texts with the server's model (any authenticated role).
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "embeddings", request_body = EmbeddingRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One embedding per input, in input order", body = EmbeddingResponse),
        (status = 400, description = "`validation_failed` (empty input or string, wrong `dimensions`), `input_too_long`, `invalid_request` (wrong types, unknown field or `encoding_format`), `invalid_json`", body = ErrorBody,
            example = json!({"code": "validation_failed", "message": "invalid `input`: input 0 is an empty string"})),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 404, description = "`model_not_found`: `model` names a model this server does not serve", body = ErrorBody),
        (status = 413, description = "`too_many_inputs`, `payload_too_large`", body = ErrorBody),
        (status = 503, description = "`overloaded`: the embedding queue is full; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn create_embeddings(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonObject<EmbeddingRequest>,
) -> Result<web::Json<EmbeddingResponse>, ApiError> {
    principal.require_role(Role::Reader)?;
    Ok(web::Json(embeddings::create(&state, body.into_inner()).await?))
}

/// Lists the models this server serves (one: the embedding model), as OpenAI's `GET /v1/models`.
#[utoipa::path(
    get, path = "/v1/models", tag = "embeddings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The served models", body = ModelList, links(
            ("GetModel" = (operation_id = "get_model", parameters(("id" = "$response.body#/data/0/id")))),
        )),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
    )
)]
pub async fn list_models(state: web::Data<AppState>, principal: Principal) -> Result<web::Json<ModelList>, ApiError> {
    principal.require_role(Role::Reader)?;
    Ok(web::Json(embeddings::models(&state)))
}

/// One model by id, as OpenAI's `GET /v1/models/{id}`.
#[utoipa::path(
    get, path = "/v1/models/{id}", tag = "embeddings",
    params(("id" = String, Path, description = "Model name, e.g. all-MiniLM-L6-v2")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 401, description = "`missing_credentials`, `invalid_credentials`", body = ErrorBody),
        (status = 404, description = "`model_not_found`", body = ErrorBody,
            example = json!({"code": "model_not_found", "message": "model `text-embedding-3-small` is not served here; this server serves `all-MiniLM-L6-v2`"})),
    )
)]
pub async fn get_model(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<web::Json<Model>, ApiError> {
    principal.require_role(Role::Reader)?;
    Ok(web::Json(embeddings::model(&state, &id)?))
}
