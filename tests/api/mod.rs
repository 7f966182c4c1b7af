mod helpers;

mod embedded;
mod embeddings;
mod errors;
mod openapi;
mod system;
mod tenancy;
mod users;
