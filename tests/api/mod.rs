mod helpers;

mod embedded;
mod embeddings;
mod errors;
mod collections;
mod filters;
mod openapi;
mod system;
mod tenancy;
mod users;
