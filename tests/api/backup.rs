//! Backup and restore, for real: pg_dump/pg_restore and pg_basebackup with WAL archiving, from
//! the binaries bootstrap installs, into clusters of the test's own.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use onebase::db;
use onebase::ops::{backup, pitr};

use crate::api::helpers::{
    call, cluster_options, collection, shared_cluster, spawn_app, spawn_app_on, start_cluster, tools_dir, TestApp,
};

fn bin() -> std::path::PathBuf {
    tools_dir().join("pg").join("bin")
}

async fn search(app: &TestApp, query: &str) -> serde_json::Value {
    let (status, res) = call(
        app,
        Method::POST,
        "/v1/collections/kb/search",
        Some(json!({"query": query, "k": 4})),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    res["hits"].clone()
}

const NOTES: [(&str, &str); 5] = [
    (
        "leave",
        "Employees get 25 days of paid leave a year, booked in the HR portal.",
    ),
    (
        "parking",
        "Visitors park on level -2 of the garage; the barrier opens with the visitor code.",
    ),
    (
        "printer",
        "The printer on floor 3 jams when the paper tray is overfilled.",
    ),
    (
        "payroll",
        "Salaries are paid on the 25th; payslips appear in the HR portal.",
    ),
    (
        "badge",
        "A lost badge is replaced at reception after a manager approves it.",
    ),
];

/// Ingest, back up while serving, ingest more, restore into a new data directory: the first
/// set's searches are identical and the later writes are absent. Bad files and a non-empty
/// target are refused before anything is written.
#[tokio::test]
async fn a_backup_restores_into_a_new_cluster_without_the_later_writes() {
    let app = spawn_app().await;
    collection(&app, json!({"name": "kb"})).await;
    let docs: Vec<_> = NOTES.iter().map(|(id, text)| json!({"id": id, "text": text})).collect();
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/documents",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(status, 201);
    let queries = [
        "how many holidays do I get?",
        "where can guests leave their car?",
        "paper keeps getting stuck",
    ];
    let mut before = Vec::new();
    for q in queries {
        before.push(search(&app, q).await);
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("kb.dump");
    let source = backup::Target::from_config(&shared_cluster().client_config(&app.db_name)).unwrap();
    let report = backup::dump(&bin(), &source, &file).unwrap();
    assert!(report.bytes > 10_000, "{report:?}");
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/collections/kb/documents",
        Some(json!({"documents": [{"id": "later", "text": "Holidays carry over until March of the next year."}]})),
    )
    .await;
    assert_eq!(status, 201);

    // Refused before anything is written: a truncated copy, another program's file, a target
    // that holds data.
    let info = backup::check(&bin(), &file).unwrap();
    assert_eq!(Some(info.schema_version), onebase::db::migrations::latest_version());
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.path().join("truncated.dump");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = backup::check(&bin(), &truncated).unwrap_err().to_string();
    assert!(err.contains("damaged or truncated"), "{err}");
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "just some text, not a backup").unwrap();
    let err = backup::check(&bin(), &foreign).unwrap_err().to_string();
    assert!(err.contains("not an onebase backup"), "{err}");
    let err = backup::ensure_empty(&app.pool.get().await.unwrap(), "the test database")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");

    let cluster = start_cluster(&dir.path().join("restored"), 54339, None).await;
    let client = db::connect_once(&cluster.client_config("onebase")).await.unwrap();
    backup::ensure_empty(&client, "the new cluster").await.unwrap();
    backup::restore(
        &bin(),
        &file,
        &backup::Target::from_config(&cluster.client_config("onebase")).unwrap(),
        &client,
    )
    .await
    .unwrap();
    let mut restored = spawn_app_on(cluster.client_config("onebase"), |_| {}).await;
    restored.owner_key = app.owner_key.clone();
    for (q, hits) in queries.iter().zip(&before) {
        assert_eq!(&search(&restored, q).await, hits, "same hits and scores for {q:?}");
    }
    let (status, _) = call(&restored, Method::GET, "/v1/collections/kb/documents/later", None).await;
    assert_eq!(status, 404, "the write after the backup is not in it");
    let (_, coll) = call(&restored, Method::GET, "/v1/collections/kb", None).await;
    assert_eq!(coll["document_count"], 5, "{coll}");
    // Writes work on the restored database (roles, grants and row-level security came along).
    let (status, res) = call(
        &restored,
        Method::POST,
        "/v1/collections/kb/documents",
        Some(json!({"documents": [{"id": "new", "text": "The canteen opens at noon."}]})),
    )
    .await;
    assert_eq!(status, 201, "{res}");

    // A backup of a newer schema is refused.
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '', '0')",
            &[],
        )
        .await
        .unwrap();
    let future = dir.path().join("future.dump");
    backup::dump(
        &bin(),
        &backup::Target::from_config(&cluster.client_config("onebase")).unwrap(),
        &future,
    )
    .unwrap();
    let err = backup::check(&bin(), &future).unwrap_err().to_string();
    assert!(err.contains("newer onebase") && err.contains("999"), "{err}");
}

async fn archived(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT archived_count FROM pg_stat_archiver", &[])
        .await
        .unwrap()
        .get(0)
}

/// Write A, note the time, write B; recovery of the base backup and the archived WAL to that
/// time has A and not B.
#[tokio::test]
async fn point_in_time_recovery_has_a_and_not_b() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let archive = dir.path().join("wal");
    let cluster = start_cluster(&dir.path().join("pg"), 54340, Some(&archive)).await;
    let app = spawn_app_on(cluster.client_config("onebase"), |_| {}).await;
    let base = dir.path().join("base");
    let source = backup::Target::from_config(&cluster.client_config("onebase")).unwrap();
    let report = {
        let (base, source) = (base.clone(), source.clone());
        tokio::task::spawn_blocking(move || pitr::base_backup(&bin(), &source, &base))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(report.bytes > 1_000_000, "{report:?}");

    let run = |actor: &'static str| {
        let app = &app;
        async move {
            let (status, res) = call(
                app,
                Method::POST,
                "/v1/runs",
                Some(json!({"actor": actor, "request_payload": {}, "status": "queued"})),
            )
            .await;
            assert_eq!(status, 201, "{res}");
        }
    };
    run("A").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = db::connect_once(&cluster.client_config("onebase")).await.unwrap();
    let noted: chrono::DateTime<chrono::Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    run("B").await;
    // Archive the segment holding B (the server does it within archive_timeout anyway).
    let count = archived(&client).await;
    client.execute("SELECT pg_switch_wal()", &[]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while archived(&client).await <= count {
        assert!(Instant::now() < deadline, "the WAL segment was not archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut opts = cluster_options(dir.path().join("recovered"), 54341);
    opts.wal_archive = None;
    let (recovered, took) = {
        let (base, archive) = (base.clone(), archive.clone());
        tokio::task::spawn_blocking(move || pitr::restore_base(opts, &base, &archive, Some(noted)))
            .await
            .unwrap()
            .unwrap()
    };
    let client = db::connect_once(&recovered.client_config("onebase")).await.unwrap();
    let actors: Vec<String> = client
        .query("SELECT actor FROM runs ORDER BY actor", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    eprintln!("recovered to {noted} in {took:?}");
    assert_eq!(actors, ["A"], "A was written before the noted time, B after it");
    // A target directory that is not empty is refused.
    let err = tokio::task::spawn_blocking({
        let (base, archive) = (base.clone(), archive.clone());
        let opts = cluster_options(dir.path().join("recovered"), 54342);
        move || pitr::restore_base(opts, &base, &archive, None)
    })
    .await
    .unwrap()
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not empty"), "{err}");
}
