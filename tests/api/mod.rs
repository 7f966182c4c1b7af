mod helpers;

mod embedded;
mod errors;
mod openapi;
mod system;
mod tenancy;
mod users;
