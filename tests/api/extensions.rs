//! The database's extensions at startup: an older pgvector (or pg_trgm) is moved to the installed
//! version once, and the pgvector probe runs every operator onebase uses and leaves nothing
//! behind. (The probe against a pgvector that crashes is tests/python/test_vector_probe.py: it
//! needs a patched copy of the binaries and the real server process.)

use onebase::db;

use super::helpers::{shared_cluster, spawn_app_on};

/// A fresh database of the shared cluster; returns its config and an admin client on it.
async fn fresh_database() -> (tokio_postgres::Config, tokio_postgres::Client) {
    let cluster = shared_cluster();
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = db::connect_once(&cluster.client_config("postgres"))
        .await
        .expect("admin connection");
    db::ensure_database(&admin, &db_name)
        .await
        .expect("create test database");
    let config = cluster.client_config(&db_name);
    let client = db::connect_once(&config)
        .await
        .expect("connection to the test database");
    (config, client)
}

async fn versions(client: &tokio_postgres::Client, name: &str) -> (String, String) {
    let (installed, available) = db::extension_versions(client, name)
        .await
        .expect("extension versions")
        .expect("the extension");
    (installed, available.expect("the server ships the extension"))
}

#[tokio::test]
async fn an_older_vector_extension_is_updated_once_at_startup() {
    // Arrange: a database as the earlier binaries left it (pgvector 0.8.2, pg_trgm 1.5). pg_trgm
    // 1.5 is built from its 1.3 script and the update scripts. pgvector ships only its newest
    // install script, so 0.8.2 cannot be created; but its update scripts from 0.8.0 on are empty
    // (0.8.2's objects are 0.8.6's), so a 0.8.2 database differs from a new one only in the
    // version its catalog row records, and that is what is set here.
    let (config, client) = fresh_database().await;
    client
        .batch_execute(
            "CREATE EXTENSION pg_trgm VERSION '1.5'; CREATE EXTENSION vector;
             UPDATE pg_extension SET extversion = '0.8.2' WHERE extname = 'vector'",
        )
        .await
        .expect("older extension versions");
    let (before, available) = versions(&client, "vector").await;
    assert_eq!(before, "0.8.2");
    assert_ne!(available, "0.8.2", "the installed pgvector should be newer than 0.8.2");

    // Act: the server starts on it.
    let app = spawn_app_on(config, |_| {}).await;

    // Assert: both moved to the installed version, and the server works on them.
    for name in ["vector", "pg_trgm"] {
        let (installed, available) = versions(&client, name).await;
        assert_eq!(installed, available, "{name} after startup");
    }
    let distance: f64 = client
        .query_one("SELECT ('[1,2,3]'::vector <=> '[3,2,1]'::vector)::float8", &[])
        .await
        .expect("a distance on the updated extension")
        .get(0);
    assert!((distance - (1.0 - 10.0 / 14.0)).abs() < 1e-6, "{distance}");
    let res = app.get("/ready").await;
    assert_eq!(res.status(), 200);
    // Once: a second pass finds nothing to update.
    let again = db::update_extensions(&client).await.expect("second pass");
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn an_up_to_date_database_has_nothing_to_update() {
    let (_config, client) = fresh_database().await;
    client
        .batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_trgm; CREATE EXTENSION btree_gist")
        .await
        .unwrap();

    let updates = db::update_extensions(&client).await.expect("update pass");

    assert!(updates.is_empty(), "{updates:?}");
}

#[tokio::test]
async fn update_reports_each_extension_it_moved() {
    let (_config, client) = fresh_database().await;
    client
        .batch_execute("CREATE EXTENSION vector; CREATE EXTENSION btree_gist VERSION '1.6'")
        .await
        .unwrap();

    let updates = db::update_extensions(&client).await.expect("update pass");

    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].name, "btree_gist");
    assert_eq!(updates[0].from, "1.6");
    assert_eq!(updates[0].to, versions(&client, "btree_gist").await.1);
}

#[tokio::test]
async fn the_pgvector_probe_passes_and_leaves_nothing_behind() {
    // A database with no extension yet: the probe creates pgvector inside its own transaction.
    let (config, client) = fresh_database().await;

    db::probe::run(&config, None, None)
        .await
        .expect("the probe passes on this machine");

    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'vector')
                  + (SELECT count(*) FROM pg_class WHERE relname LIKE 'onebase_vector_probe%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the probe's transaction is rolled back");
}
