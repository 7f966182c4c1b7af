//! The PostgreSQL server: pools and one-off connections to it (TLS when asked), the checks and
//! updates of its extensions at startup, and creating the database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;

/// The lowest pgvector release onebase runs on (`halfvec`, iterative index scans come later).
pub const MIN_VECTOR_VERSION: (u32, u32) = (0, 7);
/// The release onebase is tested on; older ones get a warning.
pub const RECOMMENDED_VECTOR_VERSION: (u32, u32) = (0, 8);
/// Extensions the first migration creates.
pub const EXTENSIONS: [&str; 3] = ["vector", "pg_trgm", "btree_gist"];

/// Builds the pool. TLS is negotiated when the URL's `sslmode` asks for it (`prefer`, the
/// libpq default, or `require`); certificates are verified against the Mozilla roots plus an
/// optional PEM bundle (`ONEBASE_DB_CA_FILE`), so a private CA works without turning
/// verification off.
pub fn build_pool(
    config: tokio_postgres::Config,
    max_size: usize,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Pool> {
    build_pool_timed(config, max_size, ca_file, Duration::from_secs(10))
}

/// [`build_pool`] with the time allowed to get or make a connection (a read replica's pool
/// gives up sooner, and its reads go to the primary).
pub fn build_pool_timed(
    mut config: tokio_postgres::Config,
    max_size: usize,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> anyhow::Result<Pool> {
    // No JIT: compiling a plan costs tens of milliseconds whenever its estimated cost passes
    // jit_above_cost (an exact vector scan's distance calls can), and it pays off only for long
    // analytical queries; these run in milliseconds. Per connection, so it holds on an external
    // database too.
    let options = config.get_options().unwrap_or_default();
    if !options.contains("jit=") {
        config.options(format!("{options} -c jit=off").trim());
    }
    let mgr_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable || config.get_hosts().iter().all(is_unix_host) {
        Manager::from_config(config, tokio_postgres::NoTls, mgr_config)
    } else {
        Manager::from_config(config, make_tls(ca_file)?, mgr_config)
    };
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}

fn is_unix_host(host: &tokio_postgres::config::Host) -> bool {
    matches!(host, tokio_postgres::config::Host::Unix(_))
}

fn make_tls(ca_file: Option<&std::path::Path>) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
        let mut reader = std::io::BufReader::new(pem.as_slice());
        for cert in rustls_pemfile_certs(&mut reader)? {
            roots.add(cert).context("adding a CA certificate")?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_reader_iter(reader)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing PEM certificates")
}

/// Parses "0.8.2" into (0, 8).
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().map(|m| m.trim().parse().ok()).unwrap_or(Some(0))?;
    Some((major, minor))
}

/// Fails with an operator-readable message when pgvector is missing or too old. Runs before
/// migrations so that the first error names the real problem.
pub async fn check_vector_available(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let row = client
        .query_opt(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await
        .context("querying pg_available_extensions")?;
    let Some(row) = row else {
        anyhow::bail!(
            "the pgvector extension is not installed on this PostgreSQL server; install pgvector >= {}.{} \
             (e.g. the pgvector/pgvector docker image, or your distribution's postgresql-NN-pgvector package)",
            MIN_VECTOR_VERSION.0,
            MIN_VECTOR_VERSION.1
        )
    };
    let default: String = row.get(0);
    let installed: Option<String> = row.get(1);
    let version = installed.unwrap_or(default);
    match major_minor(&version) {
        Some(v) if v >= MIN_VECTOR_VERSION => {
            if v < RECOMMENDED_VECTOR_VERSION {
                tracing::warn!(%version, "pgvector is older than the recommended 0.8; iterative index scans are unavailable");
            }
            Ok(())
        }
        _ => anyhow::bail!(
            "pgvector {version} is too old: onebase needs >= {}.{} ({}.{} recommended)",
            MIN_VECTOR_VERSION.0,
            MIN_VECTOR_VERSION.1,
            RECOMMENDED_VECTOR_VERSION.0,
            RECOMMENDED_VECTOR_VERSION.1
        ),
    }
}

/// An extension moved to the installed library's version at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionUpdate {
    pub name: &'static str,
    pub from: String,
    pub to: String,
}

/// The version of extension `name` this database has, and the one its server installs (`None`
/// when the server no longer ships it); `None` when the database does not have it.
pub async fn extension_versions(
    client: &tokio_postgres::Client,
    name: &str,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    let row = client
        .query_opt(
            "SELECT e.extversion, a.default_version FROM pg_extension e
             LEFT JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = $1",
            &[&name],
        )
        .await
        .with_context(|| format!("reading the version of the {name} extension"))?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// Moves each of [`EXTENSIONS`] that this database has at an older version than the one its
/// server installs (`default_version`) to that version, with `ALTER EXTENSION ... UPDATE`, and logs
/// it. A data directory made by older binaries (pgvector 0.8.2 from the wheel onebase used before)
/// otherwise keeps the old SQL definitions over the new library. Once updated, the versions match
/// and later starts do nothing. The migrations' advisory lock is held by the caller, so servers
/// starting together update once.
pub async fn update_extensions(client: &tokio_postgres::Client) -> anyhow::Result<Vec<ExtensionUpdate>> {
    let mut updates = Vec::new();
    for name in EXTENSIONS {
        let Some((installed, Some(available))) = extension_versions(client, name).await? else {
            continue;
        };
        if installed == available {
            continue;
        }
        // The name is one of our constants, not input; no bind parameters in DDL.
        if let Err(err) = client
            .batch_execute(&format!("ALTER EXTENSION {} UPDATE", quote_ident(name)))
            .await
        {
            // An external database whose extensions belong to another role: serve on the old
            // version (the probe has just run its operators) and tell the operator what to run.
            tracing::warn!(
                extension = name,
                installed = %installed,
                available = %available,
                error = %err,
                "could not update the extension; run `ALTER EXTENSION {name} UPDATE` as its owner"
            );
            continue;
        }
        tracing::info!(extension = name, from = %installed, to = %available, "updated extension");
        updates.push(ExtensionUpdate {
            name,
            from: installed,
            to: available,
        });
    }
    Ok(updates)
}

/// Creates `dbname` on the cluster reached by `admin` unless it exists.
pub async fn ensure_database(admin: &tokio_postgres::Client, dbname: &str) -> anyhow::Result<()> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .context("looking up the database")?
        .is_some();
    if !exists {
        // CREATE DATABASE takes no bind parameters; quote the identifier instead.
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(dbname)))
            .await
            .with_context(|| format!("creating database {dbname}"))?;
        tracing::info!(dbname, "created database");
    }
    Ok(())
}

/// Quotes an SQL identifier (doubling embedded quotes).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Connects one client outside the pool (for setup steps), driving the connection on a task.
pub async fn connect_once(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "setup connection closed");
        }
    });
    Ok(client)
}
