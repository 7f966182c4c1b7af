//! The embeddings service behind the OpenAI-compatible `POST /v1/embeddings` and `/v1/models`:
//! the request and response shapes, their validation against the server's limits, the call to
//! the in-process model and the token usage it reports.

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::body::integer;
use crate::state::{AppState, EmbedLimits};

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

/// Embeds the request's texts with the served model, after checking them against the model and
/// the server's limits, and reports the tokens the model read as the usage.
pub async fn create(state: &AppState, req: EmbeddingRequest) -> Result<EmbeddingResponse, ApiError> {
    let format = req.encoding_format.unwrap_or_default();
    let info = state.embedder.info();
    if let Some(model) = &req.model {
        require_served(state, model)?;
    }
    if req.dimensions.is_some_and(|d| d != info.dims) {
        return Err(ApiError::validation(
            "dimensions",
            format!("this model has {} dimensions", info.dims),
        ));
    }
    let inputs = match req.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    validate_inputs(&inputs, &state.embed_limits)?;

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
    Ok(EmbeddingResponse {
        object: "list",
        data,
        model: info.name.clone(),
        usage: Usage {
            prompt_tokens: total_tokens,
            total_tokens,
        },
        truncated_inputs,
    })
}

/// At least one text, at most `max_inputs`, none empty, none longer than `max_chars`.
fn validate_inputs(inputs: &[String], limits: &EmbedLimits) -> Result<(), ApiError> {
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
    Ok(())
}

/// The models this server serves: one, the embedding model.
pub fn models(state: &AppState) -> ModelList {
    ModelList {
        object: "list",
        data: vec![served_model(state)],
    }
}

/// The served model by its name; `model_not_found` for any other name.
pub fn model(state: &AppState, id: &str) -> Result<Model, ApiError> {
    require_served(state, id)?;
    Ok(served_model(state))
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
/// states exactly what [`create`] accepts.
pub fn document_limits(doc: &mut serde_json::Value, limits: &EmbedLimits, dims: usize) {
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
