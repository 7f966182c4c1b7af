//! `POST /v1/embeddings`, in OpenAI's request and response shape, served by the in-process model.

use actix_web::web;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Principal, Role};
use crate::embed::EmbedError;
use crate::error::{ApiError, ErrorBody};
use crate::http::body::{integer, JsonObject};
use crate::state::AppState;

/// One text or a list of texts. Its schema's bounds are the server's configured limits, filled in
/// by [`document_limits`] when the OpenAPI document is built.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"input": ["The cat sat on the mat.", "A dog barked."], "model": "all-MiniLM-L6-v2"}))]
pub struct EmbeddingRequest {
    pub input: EmbeddingInput,
    /// Optional; when given it must name the loaded model.
    pub model: Option<String>,
    /// `float` (default): each embedding is an array of numbers. `base64`: each embedding is the
    /// base64 of its little-endian float32 bytes (what OpenAI's SDKs ask for by default; about 40%
    /// of the JSON size and much cheaper to encode and parse).
    #[schema(example = "float")]
    pub encoding_format: Option<EncodingFormat>,
    /// Accepted for OpenAI compatibility; must be absent or equal to the model's dimensions.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// Accepted for OpenAI compatibility and ignored.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// An embedding as numbers, or as base64 of little-endian float32 bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

impl EmbeddingVector {
    fn encode(vector: Vec<f32>, format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => EmbeddingVector::Float(vector),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of the input this embedding belongs to.
    pub index: usize,
    /// L2-normalized vector (a base64 string with `encoding_format: base64`).
    pub embedding: EmbeddingVector,
    /// True when the input was longer than the model's maximum length and was cut to fit.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456, 0.0789], "truncated": false}],
    "model": "all-MiniLM-L6-v2",
    "usage": {"prompt_tokens": 9, "total_tokens": 9},
    "truncated_inputs": []
}))]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
    /// Indexes of the inputs that were truncated to the model's maximum length.
    pub truncated_inputs: Vec<usize>,
}

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
    let body = body.into_inner();
    let format = body.encoding_format.unwrap_or_default();
    let info = state.embedder.info();
    if let Some(model) = &body.model {
        require_served(&state, model)?;
    }
    if body.dimensions.is_some_and(|d| d != info.dims) {
        return Err(ApiError::validation(
            "dimensions",
            format!("this model has {} dimensions", info.dims),
        ));
    }
    let inputs = match body.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    let limits = &state.embed_limits;
    if inputs.is_empty() {
        return Err(ApiError::validation("input", "must contain at least one text"));
    }
    if inputs.len() > limits.max_inputs {
        return Err(ApiError::TooManyInputs {
            count: inputs.len(),
            max: limits.max_inputs,
        });
    }
    for (index, text) in inputs.iter().enumerate() {
        if text.is_empty() {
            return Err(ApiError::validation(
                "input",
                format!("input {index} is an empty string"),
            ));
        }
        if text.chars().count() > limits.max_chars {
            return Err(ApiError::InputTooLong {
                index,
                max_chars: limits.max_chars,
            });
        }
    }

    let embedded = state.embedder.embed(inputs).await.map_err(ApiError::from)?;
    let total_tokens = embedded.total_tokens();
    let truncated_inputs = embedded
        .truncated
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.then_some(i))
        .collect();
    let data = embedded
        .vectors
        .into_iter()
        .zip(embedded.truncated)
        .enumerate()
        .map(|(index, (embedding, truncated))| EmbeddingData {
            object: "embedding",
            index,
            embedding: EmbeddingVector::encode(embedding, format),
            truncated,
        })
        .collect();
    Ok(web::Json(EmbeddingResponse {
        object: "list",
        data,
        model: info.name.clone(),
        usage: Usage {
            prompt_tokens: total_tokens,
            total_tokens,
        },
        truncated_inputs,
    }))
}

/// A model in OpenAI's `/v1/models` shape, with what onebase knows about it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "all-MiniLM-L6-v2", "object": "model", "created": 1763800000, "owned_by": "onebase",
    "dims": 384, "precision": "fp32", "pooling": "mean", "max_length": 256
}))]
pub struct Model {
    /// The name to pass as `model` to `/v1/embeddings`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix time the server started (and loaded the model).
    pub created: i64,
    /// Always `onebase`.
    pub owned_by: &'static str,
    pub dims: usize,
    pub precision: crate::embed::Precision,
    pub pooling: crate::embed::PoolingKind,
    pub max_length: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Model>,
}

fn served_model(state: &AppState) -> Model {
    let info = state.embedder.info();
    Model {
        id: info.name.clone(),
        object: "model",
        created: state.started_unix,
        owned_by: "onebase",
        dims: info.dims,
        precision: info.precision,
        pooling: info.pooling,
        max_length: info.max_length,
    }
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
    Ok(web::Json(ModelList {
        object: "list",
        data: vec![served_model(&state)],
    }))
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
    require_served(&state, &id)?;
    Ok(web::Json(served_model(&state)))
}

/// `model_not_found` unless `requested` is the name of the model this server serves.
fn require_served(state: &AppState, requested: &str) -> Result<(), ApiError> {
    let served = &state.embedder.info().name;
    if requested != served {
        return Err(ApiError::ModelNotFound {
            requested: requested.to_string(),
            served: served.clone(),
        });
    }
    Ok(())
}

/// Writes this server's limits into the OpenAPI document: the bounds of `input` (texts per
/// request, characters per text) and the one accepted value of `dimensions`, so that the spec
/// states exactly what the handler accepts.
pub fn document_limits(doc: &mut serde_json::Value, limits: &crate::state::EmbedLimits, dims: usize) {
    let text = serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": limits.max_chars,
        "description": format!("A non-empty text of at most {} characters (ONEBASE_EMBED_MAX_CHARS).", limits.max_chars)
    });
    let schemas = &mut doc["components"]["schemas"];
    schemas["EmbeddingInput"] = serde_json::json!({
        "description": format!(
            "One text, or a list of 1 to {} texts (ONEBASE_EMBED_MAX_INPUTS).", limits.max_inputs),
        "oneOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_inputs}],
        "example": ["The cat sat on the mat.", "A dog barked."]
    });
    let dimensions = &mut schemas["EmbeddingRequest"]["properties"]["dimensions"];
    if dimensions.is_object() {
        dimensions["minimum"] = dims.into();
        dimensions["maximum"] = dims.into();
        dimensions["description"] =
            format!("Accepted for OpenAI compatibility; absent, null or {dims} (the model's dimensions).").into();
    }
}

impl From<EmbedError> for ApiError {
    fn from(err: EmbedError) -> Self {
        match err {
            EmbedError::Overloaded { retry_after_secs } => ApiError::Overloaded {
                message: "the embedding queue is full; retry later".into(),
                retry_after_secs: u32::try_from(retry_after_secs).unwrap_or(u32::MAX),
            },
            EmbedError::TooManyInputs { count, max } => ApiError::TooManyInputs { count, max },
            // The server is stopping; another instance (or this one after restart) can serve it.
            EmbedError::ShuttingDown => ApiError::Overloaded {
                message: "the server is shutting down; retry later".into(),
                retry_after_secs: 1,
            },
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
