//! The knowledge plane: collections of documents, their chunks and embeddings, and search.

pub mod api_collections;
pub mod chunker;
pub mod collections;
pub mod ddl;
pub mod model;
