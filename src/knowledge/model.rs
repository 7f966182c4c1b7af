//! Collections' request and response shapes, and the rules their fields follow.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::body::integer;

/// How vectors are compared. Scores are "higher is better": cosine similarity `1 - distance`
/// in [-1, 1]; for `ip` the inner product; for `l2` `1 / (1 + distance)` in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    Cosine,
    L2,
    Ip,
}

impl Distance {
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::Ip => "ip",
        }
    }

    pub fn parse(s: &str) -> Option<Distance> {
        match s {
            "cosine" => Some(Distance::Cosine),
            "l2" => Some(Distance::L2),
            "ip" => Some(Distance::Ip),
            _ => None,
        }
    }

    /// pgvector's operator class and distance operator.
    pub fn opclass(self) -> &'static str {
        match self {
            Distance::Cosine => "vector_cosine_ops",
            Distance::L2 => "vector_l2_ops",
            Distance::Ip => "vector_ip_ops",
        }
    }

    pub fn operator(self) -> &'static str {
        match self {
            Distance::Cosine => "<=>",
            Distance::L2 => "<->",
            Distance::Ip => "<#>",
        }
    }

    /// The score for a distance as pgvector reports it (`<#>` is the negated inner product).
    pub fn score(self, distance: f64) -> f64 {
        match self {
            Distance::Cosine => 1.0 - distance,
            Distance::L2 => 1.0 / (1.0 + distance),
            Distance::Ip => -distance,
        }
    }
}

/// The vector index of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum IndexSpec {
    /// HNSW (pgvector): `m` 2 to 100 (default 16), `ef_construction` 4 to 1000 (default 128);
    /// below `2 * m` (pgvector's floor) it is raised to `2 * m`.
    Hnsw {
        #[serde(default, deserialize_with = "integer::option")]
        #[schema(minimum = 2, maximum = 100)]
        m: Option<u32>,
        #[serde(default, deserialize_with = "integer::option")]
        #[schema(minimum = 4, maximum = 1000)]
        ef_construction: Option<u32>,
    },
    /// IVFFlat (pgvector): `lists` 1 to 4096 (default 100). Its centroids come from the rows
    /// present when the index is built: create it on a loaded collection.
    Ivfflat {
        #[serde(default, deserialize_with = "integer::option")]
        #[schema(minimum = 1, maximum = 4096)]
        lists: Option<u32>,
    },
    /// No vector index: every search is exact. (A struct variant, so that unknown fields are
    /// refused as for the other two.)
    None {},
}

impl IndexSpec {
    pub const DEFAULT_M: u32 = 16;
    pub const DEFAULT_EF_CONSTRUCTION: u32 = 128;
    pub const DEFAULT_LISTS: u32 = 100;

    /// Whether the collection's writes go to an open segment that a merge seals (see
    /// `knowledge::segments`): HNSW collections'. IVFFlat inserts cost little and its lists are
    /// trained on the rows present at its build, and `index: none` searches exactly: those
    /// collections keep their rows in one segment.
    pub fn seals(&self) -> bool {
        matches!(self, IndexSpec::Hnsw { .. })
    }

    /// With the defaults filled in, as stored and reported.
    pub fn resolved(&self) -> Result<IndexSpec, ApiError> {
        Ok(match *self {
            IndexSpec::Hnsw { m, ef_construction } => {
                let m = m.unwrap_or(Self::DEFAULT_M);
                if !(2..=100).contains(&m) {
                    return Err(ApiError::validation("index.m", "must be 2 to 100"));
                }
                let ef = ef_construction.unwrap_or(Self::DEFAULT_EF_CONSTRUCTION);
                if !(4..=1000).contains(&ef) {
                    return Err(ApiError::validation("index.ef_construction", "must be 4 to 1000"));
                }
                let ef = ef.max(2 * m);
                IndexSpec::Hnsw {
                    m: Some(m),
                    ef_construction: Some(ef),
                }
            }
            IndexSpec::Ivfflat { lists } => {
                let lists = lists.unwrap_or(Self::DEFAULT_LISTS);
                if !(1..=4096).contains(&lists) {
                    return Err(ApiError::validation("index.lists", "must be 1 to 4096"));
                }
                IndexSpec::Ivfflat { lists: Some(lists) }
            }
            IndexSpec::None {} => IndexSpec::None {},
        })
    }
}

/// Where a collection's vectors come from: `{"model": ...}` (or `{}`) when onebase embeds the
/// text, `{"dimension": ...}` for bring-your-own vectors.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingSpec {
    Model(ModelEmbedding),
    Vectors(OwnVectors),
}

impl Default for EmbeddingSpec {
    fn default() -> Self {
        EmbeddingSpec::Model(ModelEmbedding { model: None })
    }
}

/// onebase embeds the collection's text with this model.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEmbedding {
    /// A served model (`GET /v1/models`); default: the served model.
    pub model: Option<String>,
}

/// The caller brings the vectors.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnVectors {
    /// The vectors' dimension, 1 to 2000 (what pgvector's `vector` indexes); `null`: fixed by the
    /// first write.
    #[serde(deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 2000)]
    pub dimension: Option<i32>,
}

/// Full-text search settings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextSearchSpec {
    /// A PostgreSQL text search configuration (default `english`; `simple` does no stemming).
    pub language: TextLanguage,
}

/// The text search configurations PostgreSQL ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextLanguage {
    Simple,
    Arabic,
    Armenian,
    Basque,
    Catalan,
    Danish,
    Dutch,
    English,
    Finnish,
    French,
    German,
    Greek,
    Hindi,
    Hungarian,
    Indonesian,
    Irish,
    Italian,
    Lithuanian,
    Nepali,
    Norwegian,
    Portuguese,
    Romanian,
    Russian,
    Serbian,
    Spanish,
    Swedish,
    Tamil,
    Turkish,
    Yiddish,
}

impl TextLanguage {
    /// The `regconfig` name (the serde name, which is lower-case ASCII).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "simple".to_string())
    }
}

/// How documents are cut into chunks before embedding (token counts in the model's tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkingSpec {
    /// Most tokens per chunk, 8 to the model's maximum length minus 2 (254 for the default model;
    /// the served spec states this server's bound).
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 8, maximum = 254)]
    pub max_tokens: u32,
    /// Tokens shared by consecutive chunks (default 0), up to the same bound as `max_tokens`;
    /// above half of `max_tokens` it is lowered to that.
    #[serde(default, deserialize_with = "integer::required")]
    #[schema(minimum = 0, maximum = 254)]
    pub overlap_tokens: u32,
}

impl ChunkingSpec {
    pub const DEFAULT: ChunkingSpec = ChunkingSpec {
        max_tokens: 200,
        overlap_tokens: 20,
    };

    /// The most `max_tokens` a model of `max_length` tokens takes (it adds two special tokens).
    pub fn ceiling(max_length: usize) -> u32 {
        u32::try_from(max_length.saturating_sub(2).max(8)).unwrap_or(u32::MAX)
    }

    /// Checks `max_tokens` for a model whose maximum length is `max_length` tokens, and lowers
    /// `overlap_tokens` to half of `max_tokens` where it is more.
    pub fn validate(self, field: &'static str, max_length: usize) -> Result<ChunkingSpec, ApiError> {
        let ceiling = Self::ceiling(max_length);
        if !(8..=ceiling).contains(&self.max_tokens) || self.overlap_tokens > ceiling {
            return Err(ApiError::validation(
                field,
                format!("max_tokens must be 8 to {ceiling}, overlap_tokens at most {ceiling}"),
            ));
        }
        Ok(ChunkingSpec {
            max_tokens: self.max_tokens,
            overlap_tokens: self.overlap_tokens.min(self.max_tokens / 2),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "handbook", "description": "The employee handbook",
    "embedding": {"model": "all-MiniLM-L6-v2"}, "distance": "cosine",
    "index": {"type": "hnsw", "m": 16, "ef_construction": 128},
    "text_search": {"language": "english"}, "chunking": {"max_tokens": 200, "overlap_tokens": 20},
    "metadata": {"team": "people"}
}))]
pub struct CreateCollection {
    /// 1 to 63 characters: letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    /// Unique in the tenant.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    pub name: String,
    /// Up to 2000 characters.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    pub embedding: Option<EmbeddingSpec>,
    /// Default `cosine`.
    pub distance: Option<Distance>,
    /// Default `{"type": "hnsw", "m": 16, "ef_construction": 128}`.
    pub index: Option<IndexSpec>,
    /// Default `{"language": "english"}`.
    pub text_search: Option<TextSearchSpec>,
    /// Default `{"max_tokens": 200, "overlap_tokens": 20}`; a write may override it.
    pub chunking: Option<ChunkingSpec>,
    /// A JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Updated quarterly", "metadata": {"team": "people", "owner": "ada"}}))]
pub struct UpdateCollection {
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// For later writes; existing chunks stay as they are.
    pub chunking: Option<ChunkingSpec>,
    /// Replaces the metadata object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Not changed by PATCH: a 409 `reindex_required` points to `POST .../reindex`.
    #[schema(value_type = Option<Object>)]
    pub index: Option<serde_json::Value>,
    /// Not changed by PATCH: a 409 `reindex_required` points to `POST .../reindex`.
    #[schema(value_type = Option<String>)]
    pub distance: Option<serde_json::Value>,
    /// Not changed by PATCH: a 409 `reembed_required` points to `POST .../reembed`.
    #[schema(value_type = Option<Object>)]
    pub embedding: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019aa2f0-6c1e-7d3a-9b1e-2f4c5d6e7f80", "name": "handbook", "description": "The employee handbook",
    "embedding": {"model": "all-MiniLM-L6-v2", "dimension": 384}, "distance": "cosine",
    "index": {"type": "hnsw", "m": 16, "ef_construction": 128}, "text_search": {"language": "english"},
    "chunking": {"max_tokens": 200, "overlap_tokens": 20}, "metadata": {"team": "people"},
    "document_count": 12, "chunk_count": 240, "stored_bytes": 48213, "disk_bytes": 1753088,
    "indexing": {"segments": 2, "unindexed_chunks": 40},
    "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z"
}))]
pub struct Collection {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub embedding: EmbeddingInfo,
    pub distance: Distance,
    pub index: IndexSpec,
    pub text_search: TextSearchInfo,
    pub chunking: ChunkingSpec,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub document_count: i64,
    pub chunk_count: i64,
    /// Bytes of document text and metadata (what `max_storage_bytes` limits).
    pub stored_bytes: i64,
    /// Bytes on disk of the collection's tables and indexes (GET of one collection only).
    pub disk_bytes: Option<i64>,
    /// How much of the collection its ANN indexes cover (GET of one collection only): writes
    /// are searchable at once, and indexed in the background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexing: Option<Indexing>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingInfo {
    /// The model that embeds text, or null for bring-your-own vectors.
    pub model: Option<String>,
    /// Null until a bring-your-own collection's first write.
    pub dimension: Option<i32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextSearchInfo {
    pub language: String,
}

/// Writes the served model's chunk bound into the OpenAPI document.
pub fn document_limits(doc: &mut serde_json::Value, max_length: usize) {
    let ceiling = ChunkingSpec::ceiling(max_length);
    let properties = &mut doc["components"]["schemas"]["ChunkingSpec"]["properties"];
    if properties.is_object() {
        properties["max_tokens"]["maximum"] = ceiling.into();
        properties["overlap_tokens"]["maximum"] = ceiling.into();
    }
}

/// A collection name: 1 to 63 characters, letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit (the rule of the `collections.name` CHECK).
pub fn validate_name(field: &'static str, name: &str) -> Result<String, ApiError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(ApiError::validation(
            field,
            "1 to 63 characters: letters, digits, '.', '_', '-', starting with a letter or digit",
        ));
    }
    Ok(name.to_string())
}

pub fn validate_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > 2000 => Err(ApiError::validation("description", "at most 2000 characters")),
        other => Ok(other),
    }
}

/// A metadata object of at most 64 KiB.
pub fn validate_metadata(
    field: &'static str,
    metadata: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, ApiError> {
    match metadata {
        Some(v) if !v.is_object() => Err(ApiError::validation(field, "must be a JSON object")),
        Some(v) if v.to_string().len() > 64 * 1024 => Err(ApiError::validation(field, "must be at most 64 KiB")),
        other => Ok(other),
    }
}

/// How much of a collection its ANN indexes cover (`GET /v1/collections/{name}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"segments": 3, "unindexed_chunks": 2400}))]
pub struct Indexing {
    /// Segments (partitions) of the chunk table: the open one, which takes new chunks, and the
    /// sealed ones, each with its own graph. Compaction keeps them few.
    pub segments: i64,
    /// Chunks in no ANN index yet (the open segment's, and those of a segment whose graph is
    /// being built), which every search scans exactly. 0 once the background jobs caught up;
    /// for `index: none`, every chunk.
    pub unindexed_chunks: i64,
}
