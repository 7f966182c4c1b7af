//! Test harness: one shared embedded cluster per test run, a fresh database per test, the app
//! bound to port 0, and a `TestApp` with request helpers. Tests talk to the real Postgres (with
//! pgvector) through the HTTP API; nothing is mocked.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use clap::Parser;
use onebase::config::{Cli, Config};
use onebase::db::{self, embedded::EmbeddedOptions, embedded::EmbeddedPostgres};
use onebase::startup::Application;
use reqwest::Method;
use serde_json::{json, Value};

/// The tools directory written by scripts/bootstrap (make test runs it first).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("ONEBASE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".onebase"))
}

/// A config as the binary would parse it with no flags, pointed at the test setup.
pub fn test_config() -> Config {
    let mut config = Cli::try_parse_from(["onebase"]).expect("default config parses").config;
    config.bind = "127.0.0.1:0".parse().expect("valid address");
    config.database_url = None;
    config.tools_dir = tools_dir();
    config.embedded.pg_bin = None;
    config.embedded.pg_setting = vec![];
    config.workers = Some(1);
    config.pool_size = Some(4);
    config.body_limit = 64 * 1024;
    config.admin_key = Some(ADMIN_KEY.into());
    config.jwt_secret = Some(JWT_SECRET.into());
    config
}

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// Options for a throwaway cluster in `data_dir`, with small memory settings so several can
/// run at once.
pub fn cluster_options(data_dir: PathBuf, port: u16) -> EmbeddedOptions {
    let mut opts = onebase::db::embedded::EmbeddedOptions::from_config(&test_config());
    opts.data_dir = data_dir;
    opts.port = port;
    opts.overrides = vec![
        ("shared_buffers".into(), "128MB".into()),
        ("max_connections".into(), "300".into()),
        // Less WAL kept on disk between checkpoints than the server's 4 GB (a test run makes
        // hundreds of databases).
        ("max_wal_size".into(), "512MB".into()),
        ("min_wal_size".into(), "64MB".into()),
    ];
    opts
}

/// The cluster shared by every test of this run, started on first use. It is stopped by the
/// parent-death signal when the test process exits.
pub fn shared_cluster() -> &'static EmbeddedPostgres {
    static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shared-cluster");
        let cluster = EmbeddedPostgres::start(cluster_options(dir, 54329)).expect("the shared test cluster starts");
        drop_earlier_databases(cluster.client_config("postgres"));
        cluster
    })
}

/// Drops the databases earlier runs' tests made (each test makes its own and leaves it), so the
/// shared cluster does not grow run after run. Runs before this run's first test database.
fn drop_earlier_databases(config: tokio_postgres::Config) {
    let work = async move {
        let client = db::connect_once(&config).await.expect("admin connection");
        let rows = client
            .query("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'", &[])
            .await
            .expect("listing databases");
        for row in rows {
            let name: String = row.get(0);
            client
                .execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), &[])
                .await
                .expect("dropping a database");
        }
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join()
    .expect("dropping earlier test databases");
}

/// The model shared by every app whose embedder settings are the defaults: loading it once keeps
/// the suite fast and its memory flat.
fn reusable_embedder(config: &Config) -> Option<onebase::embed::Embedder> {
    static EMBEDDER: OnceLock<onebase::embed::Embedder> = OnceLock::new();
    let (ours, default) = (&config.embed, &test_config().embed);
    let same = ours.embed_model == default.embed_model
        && ours.model_dir == default.model_dir
        && ours.embed_max_batch == default.embed_max_batch
        && ours.embed_max_wait_ms == default.embed_max_wait_ms
        && ours.embed_queue == default.embed_queue
        && ours.embed_threads == default.embed_threads
        && ours.embed_pooling == default.embed_pooling
        && ours.model_cache == default.model_cache;
    same.then(|| {
        EMBEDDER
            .get_or_init(|| {
                onebase::embed::Embedder::load(onebase::embed::EmbedConfig::from_config(&test_config()))
                    .expect("the embedding model loads")
            })
            .clone()
    })
}

pub struct TestApp {
    pub address: String,
    /// The `default` tenant created on first start, and its owner key.
    pub default_tenant: uuid::Uuid,
    pub owner_key: String,
    pub db_name: String,
    pub client: reqwest::Client,
    pub pool: deadpool_postgres::Pool,
}

/// Starts the app on a fresh database of the shared cluster.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        onebase::telemetry::init(onebase::config::LogFormat::Pretty);
    }
    let cluster = shared_cluster();
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect_once(&cluster.client_config("postgres"))
        .await
        .expect("admin connection");
    db::ensure_database(&admin, &db_name)
        .await
        .expect("create test database");
    spawn_app_on(cluster.client_config(&db_name), customize).await
}

/// Starts the app on the database `db` (created already), e.g. of a cluster of the test's own.
pub async fn spawn_app_on(db: tokio_postgres::Config, customize: impl FnOnce(&mut Config)) -> TestApp {
    let db_name = db.get_dbname().unwrap_or_default().to_string();
    let mut config = test_config();
    customize(&mut config);
    let app = Application::build_with_embedder(&config, db, reusable_embedder(&config))
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    // A restored database has no first run: its keys are the backed-up ones.
    let (default_tenant, owner_key) = app
        .first_run()
        .map(|first| (first.tenant_id, first.owner_key.clone()))
        .unwrap_or_default();
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        default_tenant,
        owner_key,
        db_name,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        pool,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A request with `Authorization: Bearer <credential>`.
    pub fn with(&self, method: reqwest::Method, path: &str, credential: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(credential)
    }

    /// Creates a tenant with the admin key; returns its id.
    pub async fn create_tenant(&self, name: &str) -> uuid::Uuid {
        let res = self
            .with(reqwest::Method::POST, "/v1/tenants", ADMIN_KEY)
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Creates a key with `role` in `tenant` (using the admin key); returns (key id, key).
    pub async fn create_key(&self, tenant: uuid::Uuid, role: &str) -> (uuid::Uuid, String) {
        let res = self
            .with(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/keys"), ADMIN_KEY)
            .json(&serde_json::json!({"name": format!("{role} key"), "role": role}))
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().parse().unwrap(),
            body["key"].as_str().unwrap().to_string(),
        )
    }
}

/// Reads a response as JSON, with the status for assertions.
pub async fn json(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Asserts an error response: status, stable code, a message and the request id.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let request_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let (got, body) = json(res).await;
    assert_eq!(got, status, "status, body: {body}");
    assert_eq!(body["code"], code, "code, body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message, body: {body}"
    );
    assert_eq!(
        body["request_id"].as_str().map(str::to_string),
        request_id,
        "request id in body and header"
    );
    body
}

pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = app.with(method, path, &app.owner_key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    if res.status().as_u16() == 204 {
        return (204, json!(null));
    }
    json(res).await
}

pub async fn collection(app: &TestApp, body: serde_json::Value) {
    let (status, created) = call(app, Method::POST, "/v1/collections", Some(body)).await;
    assert_eq!(status, 201, "{created}");
}

/// The names of a collection's tables, as the server builds them (`knowledge::ddl::Tables`).
pub async fn collection_tables(app: &TestApp, name: &str) -> onebase::knowledge::ddl::Tables {
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one("SELECT tenant_id, id FROM collections WHERE name = $1", &[&name])
        .await
        .unwrap();
    onebase::knowledge::ddl::Tables::new(row.get(0), row.get(1))
}

/// The rows of the collection's open segment, and its segments as the merge and compaction
/// jobs see them.
pub async fn segments_of(app: &TestApp, name: &str) -> (i64, Vec<onebase::knowledge::catalog::Segment>) {
    let tables = collection_tables(app, name).await;
    let client = app.pool.get().await.unwrap();
    let open: i32 = client
        .query_one("SELECT open_segment FROM collections WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0);
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", tables.segment(open)), &[])
        .await
        .unwrap()
        .get(0);
    (rows, onebase::knowledge::catalog::list(&client, &tables).await.unwrap())
}

/// Rows of the collection's chunk table (every chunk carries its vector).
pub async fn chunk_rows(app: &TestApp, name: &str) -> i64 {
    let table = collection_tables(app, name).await.chunks;
    let client = app.pool.get().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A request with `key`; a 204 comes back as `(204, null)`.
pub async fn call_as(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.with(method, path, key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    if res.status().as_u16() == 204 {
        return (204, Value::Null);
    }
    json(res).await
}

/// Percent-encodes a query value (RFC 3339 offsets carry `+` and `:`).
pub fn q(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("an RFC 3339 time: {v}")))
        .unwrap_or_else(|e| panic!("an RFC 3339 time ({e}): {v}"))
}

pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A money amount in canonical form: a plain decimal string (no sign, no exponent), leading
/// zeros of the integer part and trailing zeros of the fraction dropped, so that "0.500" and
/// "0.5" compare equal and nothing is rounded.
pub fn decimal(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("money is a JSON string: {v}"));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && (!frac.is_empty() || !s.contains('.')),
        "a plain decimal string: {s:?}"
    );
    let int = match int.trim_start_matches('0') {
        "" => "0",
        rest => rest,
    };
    match frac.trim_end_matches('0') {
        "" => int.to_string(),
        frac => format!("{int}.{frac}"),
    }
}

/// Creates a conversation with the owner key; asserts 201.
pub async fn conversation(app: &TestApp, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, "/v1/conversations", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Appends one message or a batch; asserts 201 and returns the messages written.
pub async fn append(app: &TestApp, conversation: &str, body: Value) -> Vec<Value> {
    let (status, written) = call(
        app,
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{written}");
    written["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{{data: [...]}}: {written}"))
        .clone()
}

/// Rows of `table` for one conversation of the default tenant, read as the table owner.
pub async fn rows_of(app: &TestApp, table: &str, conversation: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE conversation_id = $1"),
            &[&conversation],
        )
        .await
        .unwrap()
        .get(0)
}

pub async fn start_cluster(data_dir: &Path, port: u16, archive: Option<&Path>) -> EmbeddedPostgres {
    let mut opts = cluster_options(data_dir.to_path_buf(), port);
    opts.wal_archive = archive.map(Path::to_path_buf);
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(opts))
        .await
        .unwrap()
        .unwrap();
    let admin = db::connect_once(&cluster.client_config("postgres")).await.unwrap();
    db::ensure_database(&admin, "onebase").await.unwrap();
    cluster
}
