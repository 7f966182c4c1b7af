//! The knowledge plane: collections of documents, their chunks and embeddings, and search.

pub mod catalog;
pub mod chunker;
pub mod collections;
pub mod compaction;
pub mod ddl;
pub mod doc_model;
pub mod documents;
mod fusion;
pub mod import;
pub mod import_job;
pub mod index_text;
pub mod ingest;
pub mod maintain;
pub mod model;
pub mod query_vector;
pub mod reembed;
pub mod reindex;
pub mod search;
pub mod search_model;
pub(crate) mod search_scope;
mod search_text;
pub mod segment_plan;
pub mod segments;
pub mod upgrade;
pub mod write_rows;
