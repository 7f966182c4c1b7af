//! Documents' request and response shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::model::ChunkingSpec;

/// Documents per write request.
pub const MAX_BATCH: usize = 1000;
/// Characters per document text.
pub const MAX_TEXT_CHARS: usize = 1_000_000;
/// Bytes of a document id.
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// 1 to 256 bytes, no `/` and no control characters; generated (a UUIDv7) when absent.
    #[schema(pattern = r"^[^/\u0000-\u001f]{1,256}$")]
    pub id: Option<String>,
    /// The text (required where onebase embeds; optional with bring-your-own `embedding`).
    #[schema(min_length = 1, max_length = 1000000)]
    pub text: Option<String>,
    /// Bring-your-own collections only: the document's vector (one chunk per document).
    pub embedding: Option<Vec<f64>>,
    /// A JSON object of at most 64 KiB; filters match on it.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Overrides the request's and the collection's chunking for this document.
    pub chunking: Option<ChunkingSpec>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"documents": [
    {"id": "leave-policy", "text": "Employees accrue 2 days of paid leave per month. Unused days carry over.",
     "metadata": {"team": "people", "year": 2026}}
]}))]
pub struct WriteDocuments {
    /// 1 to 1000 documents. A batch is written whole or not at all.
    #[schema(min_items = 1, max_items = 1000)]
    pub documents: Vec<DocumentInput>,
    /// Overrides the collection's chunking for this request.
    pub chunking: Option<ChunkingSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteStatus {
    Created,
    Updated,
    /// Same text, chunking and metadata as stored: nothing was written or embedded.
    Unchanged,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentOutcome {
    pub id: String,
    pub status: WriteStatus,
    pub chunks: i32,
    /// Whether the text was (re-)chunked and embedded by this request.
    pub embedded: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"documents": [{"id": "leave-policy", "status": "created", "chunks": 1, "embedded": true}],
    "embedded_chunks": 1}))]
pub struct WriteResult {
    /// One per input document, in input order.
    pub documents: Vec<DocumentOutcome>,
    /// Chunks this request embedded.
    pub embedded_chunks: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "leave-policy", "text": "Employees accrue 2 days of paid leave per month.",
    "metadata": {"team": "people"}, "chunk_count": 1, "bytes": 68,
    "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:00:00Z"}))]
pub struct Document {
    pub id: String,
    pub text: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub chunk_count: i32,
    /// Bytes of text and metadata (what `max_storage_bytes` counts).
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub data: Vec<Document>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DocumentOrder {
    Id,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DocumentListParams {
    /// A filter as URL-encoded JSON, in the language of `POST .../search` (`{}` or empty: all).
    pub filter: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page (with the same `order_by`).
    #[param(pattern = r"^([0-9]{1,16}_)?[0-9a-f]{0,1024}$")]
    pub cursor: Option<String>,
    /// `id` (default), `created_at` or `updated_at`; ascending.
    pub order_by: Option<DocumentOrder>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkOut {
    pub chunk_index: i32,
    pub text: String,
    /// Character (code point) offsets of the chunk in the document's text.
    pub start_char: i32,
    pub end_char: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkList {
    pub document_id: String,
    pub data: Vec<ChunkOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"team": "people", "year": {"$lt": 2024}}}))]
pub struct DeleteByFilter {
    /// Documents matching this filter are deleted with their chunks and vectors.
    #[schema(value_type = Object)]
    pub filter: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"deleted": 3}))]
pub struct DeleteCount {
    pub deleted: u64,
}
