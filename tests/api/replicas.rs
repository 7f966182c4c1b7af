//! Read replicas, for real: a second embedded cluster made a streaming replica of the first with
//! `pg_basebackup -R`, given to the server as `ONEBASE_READ_DATABASE_URL`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use onebase::db::{self, embedded::EmbeddedPostgres};
use onebase::ops::backup;

use crate::api::helpers::{call, cluster_options, collection, spawn_app_on, start_cluster, tools_dir, TestApp};

/// A streaming replica of `primary` in `dir`, started on `port`.
async fn start_replica(primary: &EmbeddedPostgres, dir: &Path, port: u16) -> EmbeddedPostgres {
    let source = backup::Target::from_config(&primary.client_config("postgres")).unwrap();
    let output = Command::new(tools_dir().join("pg/bin/pg_basebackup"))
        .args(source.server_args())
        .arg(format!("--pgdata={}", dir.display()))
        .args([
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-password",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pg_basebackup -R: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("standby.signal").exists());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let opts = cluster_options(dir.to_path_buf(), port);
    db::embedded::give_to_postgres_user(dir, &opts.os_user).unwrap();
    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(opts))
        .await
        .unwrap()
        .unwrap()
}

/// `onebase_db_reads_total` by target.
async fn reads(app: &TestApp) -> (f64, f64) {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let value = |target: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("onebase_db_reads_total{{target=\"{target}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no reads of {target} in {metrics}"))
    };
    (value("primary"), value("replica"))
}

/// One search, and where it read.
async fn search(app: &TestApp, query: &str) -> (serde_json::Value, &'static str) {
    let before = reads(app).await;
    let (status, res) = call(
        app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": query, "k": 3})),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let after = reads(app).await;
    let target = match (after.0 - before.0, after.1 - before.1) {
        (1.0, 0.0) => "primary",
        (0.0, 1.0) => "replica",
        other => panic!("one search, reads {other:?}"),
    };
    (res["hits"].clone(), target)
}

/// Searches until one is served by `target` (the monitor re-checks every 250 ms here).
async fn search_until(app: &TestApp, query: &str, target: &str, why: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (hits, at) = search(app, query).await;
        if at == target {
            return hits;
        }
        assert!(Instant::now() < deadline, "reads did not go to the {target} ({why})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(hits: &serde_json::Value) -> Vec<String> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn reads_use_a_fresh_replica_see_their_own_writes_and_fall_back_to_the_primary() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let primary = start_cluster(&dir.path().join("primary"), 54343, None).await;
    let replica = start_replica(&primary, &dir.path().join("replica"), 54344).await;
    let replica_url = format!(
        "host={} port=54344 user=postgres dbname=onebase",
        replica.socket_dir().display()
    );
    let app = spawn_app_on(primary.client_config("onebase"), |c| {
        c.read_database_url = vec![replica_url.clone()];
        c.replica_max_lag_secs = 1.0;
    })
    .await;
    let replica_client = db::connect_once(&replica.client_config("onebase")).await.unwrap();
    let in_recovery: bool = replica_client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the second cluster is a standby");

    collection(&app, json!({"name": "kb"})).await;
    let docs = json!({"documents": [
        {"id": "leave", "text": "Employees get 25 days of paid leave a year."},
        {"id": "parking", "text": "Visitors park on level -2 of the garage."},
        {"id": "printer", "text": "The printer on floor 3 jams when the tray is overfilled."},
    ]});
    let (status, _) = call(&app, Method::POST, "/v1/collections/kb/documents", Some(docs)).await;
    assert_eq!(status, 201);

    // Right after its write the tenant reads from the primary, and sees the write.
    let (first, at) = search(&app, "how many holidays do I get?").await;
    assert_eq!(ids(&first)[0], "leave");
    // Once the replica has replayed past the write, the same search is served there, the same.
    let on_replica = search_until(&app, "how many holidays do I get?", "replica", "replica caught up").await;
    assert_eq!(
        on_replica, first,
        "the replica answers as the primary did (first read: {at})"
    );

    // Read-your-writes: each write is seen by the next read, wherever it goes.
    for i in 0..5 {
        let id = format!("note-{i}");
        let (status, _) = call(
            &app,
            Method::POST,
            "/v1/collections/kb/documents",
            Some(json!({"documents": [{"id": id, "text": format!("Note number {i} about the canteen menu.")}]})),
        )
        .await;
        assert_eq!(status, 201);
        let (status, doc) = call(&app, Method::GET, &format!("/v1/collections/kb/documents/{id}"), None).await;
        assert_eq!(status, 200, "a read right after the write sees it: {doc}");
    }

    // A replica lagging beyond the bound is skipped: pause its replay, let the primary move on.
    search_until(&app, "where do visitors park?", "replica", "caught up with the writes").await;
    replica_client
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    app.create_tenant("other").await; // WAL on the primary that the replica does not replay
    let hits = search_until(&app, "where do visitors park?", "primary", "replica paused").await;
    assert_eq!(ids(&hits)[0], "parking");
    replica_client
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    search_until(&app, "where do visitors park?", "replica", "replay resumed").await;

    // With the replica stopped, reads still succeed, from the primary.
    drop(replica_client);
    tokio::task::spawn_blocking(move || drop(replica)).await.unwrap();
    for query in ["paper keeps getting stuck", "how many holidays do I get?"] {
        let (hits, at) = search(&app, query).await;
        assert_eq!(at, "primary");
        assert!(!ids(&hits).is_empty());
    }
    let (status, _) = call(&app, Method::GET, "/v1/collections/kb/documents/leave", None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics
            .lines()
            .any(|l| l.starts_with("onebase_replica_up{") && l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped replica is not reported down: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
