//! Everything about the database, in one place: choosing it (an external `DATABASE_URL` or the
//! embedded cluster, [`resolve`]), running the embedded cluster ([`embedded`]), connecting to it
//! and checking its extensions ([`server`]), the startup probe of pgvector ([`probe`]), schema
//! migrations, the request pool with its transaction scopes, and read replicas.

pub mod cluster;
pub mod embedded;
pub mod migrations;
mod pidfile;
pub mod pool;
pub mod probe;
pub mod replicas;
pub mod resolve;
pub mod scope;
pub mod server;
mod supervisor;

pub use pool::{Conn, Pool};
pub use resolve::{attach, resolve, Database};
pub use scope::{as_owner, system_tx, tenant_scope, tenant_tx, APP_ROLE};
pub use server::{
    build_pool, build_pool_timed, check_vector_available, connect_once, ensure_database, extension_versions,
    major_minor, quote_ident, update_extensions, ExtensionUpdate, EXTENSIONS, MIN_VECTOR_VERSION,
    RECOMMENDED_VECTOR_VERSION,
};
