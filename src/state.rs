//! State shared by all handlers.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;

use crate::auth::AuthConfig;
use crate::metrics::Metrics;

pub struct AppState {
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
    pub body_limit: usize,
    pub started_at: Instant,
    pub auth: AuthConfig,
}
