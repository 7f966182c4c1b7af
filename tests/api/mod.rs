mod helpers;

mod embedded;
mod embeddings;
mod errors;
mod collections;
pub mod documents;
mod filters;
mod jobs;
mod openapi;
mod search;
mod system;
mod tenancy;
mod users;
mod runs;
mod cache;
mod conversations;
mod agent_state;
mod memories;
