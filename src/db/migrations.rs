//! Schema migrations, embedded in the binary from `migrations/` by refinery.
//!
//! They run at startup (and with `onebase migrate`) under a session advisory lock, so several
//! servers starting against one database apply them once, one after another.

use anyhow::Context;
use serde::Serialize;
use utoipa::ToSchema;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Arbitrary constant naming onebase's migration lock ("onebase" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x006f_6e65_6261_7365;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    /// When it was applied (RFC 3339), as recorded by refinery.
    pub applied_on: Option<String>,
}

/// Updates the extensions to the installed versions ([`super::update_extensions`]), then applies
/// pending migrations; returns the versions applied by this call.
pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<i64>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = async {
        super::update_extensions(client).await?;
        embedded::migrations::runner()
            .set_abort_divergent(true)
            .run_async(client)
            .await
            .context("applying migrations")
    }
    .await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result?;
    unlock.context("releasing the migration lock")?;
    let applied: Vec<i64> = report
        .applied_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .collect();
    if applied.is_empty() {
        tracing::info!("schema is up to date");
    } else {
        tracing::info!(?applied, "applied migrations");
    }
    Ok(applied)
}

/// The migrations recorded as applied in the database, oldest first.
pub async fn applied(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<AppliedMigration>> {
    let migrations = embedded::migrations::runner()
        .get_applied_migrations_async(client)
        .await
        .context("reading the migration history")?;
    Ok(migrations
        .iter()
        .map(|m| AppliedMigration {
            version: i64::from(m.version()),
            name: m.name().to_string(),
            applied_on: m.applied_on().map(|t| t.to_string()),
        })
        .collect())
}

/// The migrations embedded in this binary: (version, name). Built once (`/ready` asks on every
/// probe).
pub fn embedded_versions() -> &'static [(i64, String)] {
    static VERSIONS: std::sync::OnceLock<Vec<(i64, String)>> = std::sync::OnceLock::new();
    VERSIONS.get_or_init(|| {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| (i64::from(m.version()), m.name().to_string()))
            .collect()
    })
}

/// The newest migration embedded in this binary: the schema version it runs up to.
pub fn latest_version() -> Option<i64> {
    embedded_versions().iter().map(|(v, _)| *v).max()
}
