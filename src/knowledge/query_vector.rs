//! A search's query vector: the caller's own, or the query text embedded by the served model
//! through the cache of recent queries, which the searches of every plane share.

use super::collections::Loaded;
use super::search_model::SearchRequest;
use crate::error::ApiError;
use crate::state::AppState;

/// The query's vector, and where it came from.
#[derive(Clone)]
pub struct QueryVector {
    pub vector: Vec<f32>,
    /// True when it is the query text embedded by the served model.
    pub embedded: bool,
}

impl QueryVector {
    /// Whether this vector can search `loaded`: an embedded query needs a collection embedded by
    /// the model; the caller's vector needs the collection's dimension.
    pub(super) fn check(&self, loaded: &Loaded) -> Result<(), ApiError> {
        if self.embedded && loaded.collection.embedding.model.is_none() {
            return Err(ApiError::validation(
                "vector",
                "this collection holds your vectors: vector search needs `vector` (or use mode `text`)",
            ));
        }
        let dimension = loaded.collection.embedding.dimension;
        if !self.embedded && dimension.is_some_and(|d| d as usize != self.vector.len()) {
            return Err(ApiError::validation(
                "vector",
                format!(
                    "has {} dimensions; the collection's vectors have {}",
                    self.vector.len(),
                    dimension.unwrap_or(0)
                ),
            ));
        }
        Ok(())
    }
}

/// The caller's `vector`, or the query text embedded by the served model (through the cache).
/// Checked against the collection with [`QueryVector::check`] once it is loaded.
pub(super) async fn query_vector(state: &AppState, req: &SearchRequest) -> Result<QueryVector, ApiError> {
    match (&req.vector, &req.query) {
        (Some(v), _) => {
            let vector = super::ingest::to_f32(v)
                .ok_or_else(|| ApiError::validation("vector", "holds a number outside float32's finite range"))?;
            if vector.is_empty() {
                return Err(ApiError::validation("vector", "has 0 dimensions"));
            }
            Ok(QueryVector {
                vector,
                embedded: false,
            })
        }
        (None, Some(q)) => Ok(QueryVector {
            vector: state.embed_query(q).await?,
            embedded: true,
        }),
        (None, None) => Err(ApiError::validation("query", "send `query` or `vector`")),
    }
}
