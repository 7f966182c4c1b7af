//! Search's request and response shapes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use pgvector::Vector;

use crate::error::ApiError;
use crate::filter::Columns;
use crate::http::body::integer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest vectors (the query embedded by the collection's model, or `vector`).
    Vector,
    /// Full text, ranked by BM25: the query's words OR-ed (stemmed, stop words dropped, in the
    /// collection's language), `"quoted phrases"` required, `-words` excluded.
    Text,
    /// Both, fused (`fusion`; default a weighted sum, 0.7 vector / 0.3 text, of normalized scores).
    Hybrid,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Fusion {
    /// Reciprocal rank fusion: score = sum over the two lists of 1 / (k + rank).
    Rrf {
        /// 1 to 1000 (default 60).
        #[serde(default, deserialize_with = "integer::option")]
        #[schema(minimum = 1, maximum = 1000)]
        k: Option<u32>,
    },
    /// A weighted sum of the vector score and the BM25 score, each first normalized over the
    /// query's candidates on its side (mean - 3 sd to 0, mean + 3 sd to 1). The default fusion,
    /// with 0.7 / 0.3.
    Weighted {
        #[schema(minimum = 0, maximum = 1)]
        vector_weight: f64,
        #[schema(minimum = 0, maximum = 1)]
        text_weight: f64,
    },
}

impl Fusion {
    /// Refuses what the schema bounds: RRF's `k` 1 to 1000, weights 0 to 1.
    pub fn check(&self) -> Result<(), ApiError> {
        match self {
            Fusion::Rrf { k: Some(k) } if !(1..=1000).contains(k) => Err(ApiError::validation("fusion.k", "1 to 1000")),
            Fusion::Weighted {
                vector_weight,
                text_weight,
            } if !(0.0..=1.0).contains(vector_weight) || !(0.0..=1.0).contains(text_weight) => Err(
                ApiError::validation("fusion", "vector_weight and text_weight are each 0 to 1"),
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The best chunk of each document.
    Document,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Include {
    Text,
    Metadata,
    /// The whole document's text.
    Document,
    Embedding,
    Scores,
}

/// A search body: its own fields, then the search every collection runs, declared once for
/// `POST /v1/collections/{name}/search` and `POST /v1/search`. (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`, which both keep.)
macro_rules! search_body {
    ($(#[$attr:meta])* $name:ident { $($(#[$fattr:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            /// The query text (1 to 8192 characters): embedded for vector search, parsed for text
            /// search.
            #[schema(min_length = 1, max_length = 8192)]
            pub query: Option<String>,
            /// A query vector instead of `query` for vector search (bring-your-own collections).
            pub vector: Option<Vec<f64>>,
            /// Default `vector`. `vector` and `hybrid` need `query` (embedded) or `vector`; `text`
            /// and `hybrid` need `query`.
            pub mode: Option<SearchMode>,
            /// Hits to return, 1 to 100 (default 10).
            #[serde(default, deserialize_with = "integer::option")]
            #[schema(minimum = 1, maximum = 100)]
            pub k: Option<u32>,
            /// The filter language of the documents' listing (metadata, id, times, `$text`).
            #[schema(value_type = Option<Object>)]
            pub filter: Option<serde_json::Value>,
            /// Drop hits scoring below this.
            pub min_score: Option<f64>,
            pub fusion: Option<Fusion>,
            pub group_by: Option<GroupBy>,
            /// What each hit carries (default text, metadata, scores).
            #[schema(max_items = 5)]
            pub include: Option<Vec<Include>>,
            /// HNSW candidate list size for this query, 1 to 1000 (default 100).
            #[serde(default, deserialize_with = "integer::option")]
            #[schema(minimum = 1, maximum = 1000)]
            pub ef_search: Option<u32>,
        }
    };
}

search_body!(
    #[derive(Debug, Clone, Default, Deserialize, ToSchema)]
    #[schema(example = json!({"query": "how many days of leave do I get?", "mode": "hybrid", "k": 5,
        "filter": {"team": "people"}, "include": ["text", "metadata", "scores"]}))]
    SearchRequest {
        /// Report which plan ran and why.
        explain: Option<bool>,
    }
);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Scores {
    /// Vector score (higher is better; see the collection's `distance`).
    pub vector: Option<f64>,
    /// The raw distance pgvector computed.
    pub distance: Option<f64>,
    /// The BM25 score of the text query.
    pub text: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    /// The hit's collection (in `POST /v1/search` answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    pub document_id: String,
    pub chunk_index: i32,
    /// The hit's score: the vector score, the text rank, or the fused score (hybrid).
    pub score: f64,
    pub text: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub document: Option<String>,
    pub embedding: Option<Vec<f32>>,
    pub scores: Option<Scores>,
    pub start_char: i32,
    pub end_char: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Explain {
    /// `ann` (the vector index), `exact` (a scan of the matching rows), `text`, or `hybrid:<vector plan>`.
    pub plan: String,
    pub reason: String,
    /// Matching rows counted (up to the exact-scan threshold) when a filter is given.
    pub matching_rows: Option<i64>,
    pub ef_search: Option<u32>,
    /// PostgreSQL's plan of the vector query, node by node (e.g. `Limit > Index Scan
    /// (chunks_..._embedding_idx)`): where the index was or was not used.
    pub postgres_plan: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"hits": [{"document_id": "leave-policy", "chunk_index": 0, "score": 0.71,
    "text": "Employees accrue 2 days of paid leave per month.", "metadata": {"team": "people"},
    "scores": {"vector": 0.71, "distance": 0.29, "text": null}, "start_char": 0, "end_char": 48}]}))]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub explain: Option<Explain>,
    /// Why the text half of a `text` or `hybrid` search found nothing, when it did not: `no_words`,
    /// the query has no word left once stop words are dropped (in the collection's language), or
    /// `no_match`, no chunk holds any of its words (that the filter, phrases and exclusions leave).
    /// Null otherwise.
    pub text_reason: Option<TextReason>,
}

/// Why a text search found nothing (see [`SearchResponse::text_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextReason {
    NoWords,
    NoMatch,
}

/// Collections one `POST /v1/search` may cover.
pub const MAX_COLLECTIONS: usize = 16;

search_body!(
    #[derive(Debug, Clone, Deserialize, ToSchema)]
    #[schema(example = json!({"collections": ["handbook", "wiki"], "query": "parental leave", "mode": "hybrid", "k": 5}))]
    MultiSearchRequest {
        /// 1 to 16 collection names of the tenant, each searched with the rest of this request.
        #[schema(min_items = 1, max_items = 16)]
        collections: Vec<String>,
    }
);

impl MultiSearchRequest {
    /// The search each collection runs, and the collections.
    pub fn split(self) -> (Vec<String>, SearchRequest) {
        let search = SearchRequest {
            query: self.query,
            vector: self.vector,
            mode: self.mode,
            k: self.k,
            filter: self.filter,
            min_score: self.min_score,
            fusion: self.fusion,
            group_by: self.group_by,
            include: self.include,
            ef_search: self.ef_search,
            explain: None,
        };
        (self.collections, search)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MultiSearchResponse {
    /// The best `k` hits of all the collections, by score, each labelled with its `collection`.
    pub hits: Vec<Hit>,
}

pub const CHUNK_COLUMNS: Columns = Columns {
    metadata: "c.metadata",
    id: "c.document_id",
    created_at: "c.created_at",
    updated_at: "c.updated_at",
    text: "c.text",
    tsv: "c.tsv",
};

/// A chunk found by one of the two searches (each statement names its columns so).
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) document_id: String,
    pub(super) chunk_index: i32,
    pub(super) text: String,
    pub(super) metadata: serde_json::Value,
    pub(super) start_char: i32,
    pub(super) end_char: i32,
    pub(super) embedding: Option<Vector>,
    /// Distance for vector hits, rank for text hits.
    pub(super) value: f64,
}

pub(super) fn found(row: &tokio_postgres::Row) -> Result<Found, ApiError> {
    Ok(Found {
        document_id: row.try_get("document_id")?,
        chunk_index: row.try_get("chunk_index")?,
        text: row.try_get("text")?,
        metadata: row.try_get("metadata")?,
        start_char: row.try_get("start_char")?,
        end_char: row.try_get("end_char")?,
        embedding: row.try_get("embedding")?,
        value: row.try_get::<_, Option<f64>>("value")?.unwrap_or(f64::NAN),
    })
}
