//! The embedded cluster: restarts keep data, crashes are recovered, and signals leave no
//! Postgres behind. These run the real `onebase` binary where process behaviour matters.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onebase::db;
use onebase::db::embedded::{write_fake_postmaster_pid, EmbeddedPostgres};

use crate::api::helpers::{cluster_options, spawn_app_on, tools_dir};

fn is_alive(pid: i32) -> bool {
    // A zombie is not alive for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn data_survives_a_restart_of_the_cluster() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    {
        let cluster = EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54331)).unwrap();
        let client = db::connect_once(&cluster.client_config("postgres")).await.unwrap();
        client
            .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
            .await
            .unwrap();
    } // dropped: clean shutdown

    let cluster = EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54331)).unwrap();
    let client = db::connect_once(&cluster.client_config("postgres")).await.unwrap();
    let v: String = client.query_one("SELECT v FROM kept", &[]).await.unwrap().get(0);

    assert_eq!(v, "still here");
}

#[tokio::test]
async fn a_stale_postmaster_pid_is_recovered() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    drop(EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54332)).unwrap());
    // The pid of a live process that is not postgres, as after a reboot with pid reuse.
    write_fake_postmaster_pid(&data_dir, std::process::id() as i32).unwrap();

    let cluster = EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54332)).unwrap();

    let client = db::connect_once(&cluster.client_config("postgres")).await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(postmaster_pid(&data_dir), Some(cluster.pid()));
}

#[tokio::test]
async fn a_half_finished_initdb_is_discarded() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    let leftover = dir.path().join("pg.initdb-tmp");
    std::fs::create_dir_all(leftover.join("base")).unwrap();

    let cluster = EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54333)).unwrap();

    assert!(!leftover.exists());
    assert!(data_dir.join("PG_VERSION").exists());
    drop(cluster);
}

#[tokio::test]
async fn a_non_empty_directory_that_is_not_a_cluster_is_left_alone() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("precious.txt"), "user data").unwrap();

    let err = EmbeddedPostgres::start(cluster_options(data_dir.clone(), 54334)).unwrap_err();

    assert!(err.to_string().contains("not a PostgreSQL data directory"), "{err}");
    assert!(data_dir.join("precious.txt").exists());
}

#[tokio::test]
async fn missing_binaries_are_named_in_the_error() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut opts = cluster_options(dir.path().join("pg"), 54335);
    opts.bin_dir = dir.path().join("no-such-bin");

    let err = EmbeddedPostgres::start(opts).unwrap_err();

    assert!(err.to_string().contains("no-such-bin/postgres"), "{err}");
    assert!(err.to_string().contains("ONEBASE_PG_BIN"), "{err}");
}

/// Runs the real binary on its own embedded cluster and waits for /ready.
fn start_server(data_dir: &Path, pg_port: u16, http_port: u16) -> Child {
    start_server_with(data_dir, pg_port, http_port, &[])
}

/// [`start_server`] with more environment.
fn start_server_with(data_dir: &Path, pg_port: u16, http_port: u16, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onebase"));
    cmd.envs(env.iter().copied());
    // From the repository root with the default, relative tools dir, exactly as `make run`.
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("ONEBASE_TOOLS_DIR").is_some() {
        cmd.env("ONEBASE_TOOLS_DIR", tools_dir());
    }
    let child = cmd
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("ONEBASE_DATA_DIR", data_dir)
        .env("ONEBASE_PG_PORT", pg_port.to_string())
        .env("ONEBASE_PG_SETTINGS", "shared_buffers=128MB")
        .env("ONEBASE_BIND", format!("127.0.0.1:{http_port}"))
        .env("ONEBASE_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("onebase binary starts");
    let url = format!("http://127.0.0.1:{http_port}/ready");
    wait_until("the server is ready", Duration::from_secs(120), || http_get_ok(&url));
    child
}

/// A tiny blocking GET (std only), to poll readiness from synchronous test code.
fn http_get_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    if write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn sigterm_stops_the_server_and_leaves_no_postgres_behind() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    let mut server = start_server(&data_dir, 54336, free_port());
    let pg_pid = postmaster_pid(&data_dir).expect("postgres running");

    signal(&server, nix::sys::signal::Signal::SIGTERM);

    let status = server.wait().unwrap();
    assert!(status.success(), "clean exit, got {status}");
    assert!(!is_alive(pg_pid), "postgres {pg_pid} still running");
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "clean shutdown removes postmaster.pid"
    );
}

#[test]
fn after_kill_9_the_server_comes_back_with_its_data() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    let port = free_port();
    let mut server = start_server(&data_dir, 54337, port);
    let pg_pid = postmaster_pid(&data_dir).expect("postgres running");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let socket_config = |db: &str| {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&data_dir).port(54337).user("postgres").dbname(db);
        c
    };
    rt.block_on(async {
        let client = db::connect_once(&socket_config("onebase")).await.unwrap();
        client
            .batch_execute("CREATE TABLE survivor (v int); INSERT INTO survivor VALUES (42)")
            .await
            .unwrap();
    });

    signal(&server, nix::sys::signal::Signal::SIGKILL);
    server.wait().unwrap();
    // The parent-death signal makes the orphaned Postgres shut down by itself.
    wait_until("the orphaned postgres exits", Duration::from_secs(60), || {
        !is_alive(pg_pid)
    });
    let mut server = start_server(&data_dir, 54337, port);

    let v: i32 = rt.block_on(async {
        let client = db::connect_once(&socket_config("onebase")).await.unwrap();
        client.query_one("SELECT v FROM survivor", &[]).await.unwrap().get(0)
    });
    assert_eq!(v, 42);
    signal(&server, nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait().unwrap().success());
}

/// `kill -9` of the embedded postmaster under 8 concurrent writers: the supervisor starts it
/// again; meanwhile requests get 503 `database_unavailable`, never a 500 or a hang; every write
/// that got a 201 is there afterwards, and `/ready` is 200 again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_restarts_a_killed_postgres_and_no_acknowledged_write_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let opts = cluster_options(dir.path().join("pg"), 54338);
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(opts))
        .await
        .unwrap()
        .unwrap();
    let admin = db::connect_once(&cluster.client_config("postgres")).await.unwrap();
    db::ensure_database(&admin, "onebase").await.unwrap();
    drop(admin);
    let app = Arc::new(spawn_app_on(cluster.client_config("onebase"), |c| c.pool_size = Some(8)).await);

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acked, mut refused, mut other) = (Vec::new(), 0, Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let res = app
                        .with(reqwest::Method::POST, "/v1/runs", &app.owner_key)
                        .timeout(Duration::from_secs(30))
                        .json(&serde_json::json!({"actor": format!("writer-{w}"), "request_payload": {"n": n}, "status": "queued"}))
                        .send()
                        .await
                        .expect("the server answers (no hang, no dropped connection)");
                    let status = res.status().as_u16();
                    let body: serde_json::Value = res.json().await.unwrap_or_default();
                    match status {
                        201 => acked.push(body["id"].as_str().unwrap().to_string()),
                        503 if body["code"] == "database_unavailable" => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => other.push(format!("{status} {body}")),
                    }
                }
                (acked, refused, other)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old = cluster.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let mut saw_503 = false;
    let back = loop {
        let res = app.get("/ready").await;
        match res.status().as_u16() {
            200 if killed.elapsed() > Duration::from_millis(200) => break killed.elapsed(),
            503 => saw_503 = true,
            200 => {}
            s => panic!("/ready answered {s} while postgres restarted"),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "/ready is not 200 again a minute after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut refused = 0;
    for w in writers {
        let (a, r, other) = w.await.unwrap();
        assert!(
            other.is_empty(),
            "only 201 or 503 database_unavailable: {:?}",
            &other[..other.len().min(3)]
        );
        acked.extend(a);
        refused += r;
    }
    eprintln!(
        "postgres killed; /ready 200 again after {back:?}; {} writes acknowledged, {refused} refused with 503",
        acked.len()
    );
    assert!(saw_503, "/ready said 503 while the database was down");
    assert!(refused > 0, "some writes met the dead database");
    assert_eq!(cluster.restarts(), 1);
    assert_ne!(cluster.pid(), old);
    // Every acknowledged write is there.
    let client = app.pool.get().await.unwrap();
    let ids: Vec<uuid::Uuid> = acked.iter().map(|id| id.parse().unwrap()).collect();
    let found: i64 = client
        .query_one("SELECT count(*) FROM runs WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, ids.len() as i64, "every write that got a 201 survived the crash");
    // And the pool serves writes again by itself.
    let res = app
        .with(reqwest::Method::POST, "/v1/runs", &app.owner_key)
        .json(&serde_json::json!({"actor": "after", "request_payload": {}, "status": "queued"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// `kill -9` of the server while a merge builds a sealed segment's graph, and while a
/// compaction copies segments or builds their replacement: after each restart the jobs are
/// taken over and finish, every acknowledged row is there exactly once, every sealed segment
/// has a valid graph, and nothing a dead job made is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_seals_and_compactions_loses_no_row_and_doubles_none() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data_dir = dir.path().join("pg");
    let (pg_port, port) = (54345, free_port());
    let admin_key = "segments-crash-admin-key-0123456789abcdef";
    // A dead server's running jobs are taken over a second after their last heartbeat.
    let env = [("ONEBASE_ADMIN_KEY", admin_key), ("ONEBASE_JOB_STALE_SECS", "1")];
    let mut server = start_server_with(&data_dir, pg_port, port, &env);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send()
    };
    let tenant: serde_json::Value = post("/v1/tenants", admin_key, serde_json::json!({"name": "crash"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_string();
    let key: serde_json::Value = post(
        &format!("/v1/tenants/{tenant}/keys"),
        admin_key,
        serde_json::json!({"name": "owner", "role": "owner"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let dim = 32;
    let res = post(
        "/v1/collections",
        &key,
        serde_json::json!({"name": "crash", "embedding": {"dimension": dim}, "index": {"type": "hnsw"}}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let vector = |i: usize| -> Vec<f32> {
        (0..dim)
            .map(|d| {
                let mut z = ((i * dim + d) as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    let db = || {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&data_dir).port(pg_port).user("postgres").dbname("onebase");
        c
    };

    let (mut acked, mut next) = (Vec::new(), 0usize);
    let (mut seal_kills, mut compact_kills) = (0, 0);
    for _cycle in 0..40 {
        if seal_kills > 0 && compact_kills > 0 {
            break;
        }
        for _ in 0..3 {
            let docs: Vec<_> = (next..next + 1_000)
                .map(|i| serde_json::json!({"id": format!("r{i}"), "embedding": vector(i)}))
                .collect();
            let res = post(
                "/v1/collections/crash/documents",
                &key,
                serde_json::json!({"documents": docs}),
            )
            .await
            .unwrap();
            assert_eq!(res.status(), 201);
            acked.extend((next..next + 1_000).map(|i| format!("r{i}")));
            next += 1_000;
        }
        // Watch for a graph being built (its index is invalid until the build ends) or a
        // compaction between its copy and its swap; kill the server in the middle of it.
        let client = db::connect_once(&db()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut hit = None;
        while Instant::now() < deadline && hit.is_none() {
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                       WHERE c.relname LIKE 'chunks%embedding_idx' AND NOT i.indisvalid), \
                     EXISTS (SELECT 1 FROM jobs WHERE kind = 'compact' AND state = 'running' \
                       AND checkpoint->>'phase' = 'copy')",
                    &[],
                )
                .await
                .unwrap();
            let (building, compacting): (bool, bool) = (row.get(0), row.get(1));
            if compacting && compact_kills == 0 {
                hit = Some("compaction");
            } else if building && seal_kills == 0 {
                hit = Some("graph build");
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        drop(client);
        let Some(what) = hit else { continue };
        let pg_pid = postmaster_pid(&data_dir).expect("postgres running");
        signal(&server, nix::sys::signal::Signal::SIGKILL);
        server.wait().unwrap();
        wait_until("the orphaned postgres exits", Duration::from_secs(60), || {
            !is_alive(pg_pid)
        });
        eprintln!("killed during a {what} with {} rows acknowledged", acked.len());
        if what == "compaction" {
            compact_kills += 1;
        } else {
            seal_kills += 1;
        }
        server = start_server_with(&data_dir, pg_port, port, &env);
    }
    assert!(
        seal_kills > 0 && compact_kills > 0,
        "the kills missed: {seal_kills} during a build, {compact_kills} during a compaction"
    );

    // The taken-over jobs finish; the last rows are sealed once the writes have paused.
    let client = db::connect_once(&db()).await.unwrap();
    let start = Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM jobs WHERE kind IN ('merge', 'compact') \
                   AND state IN ('queued', 'running')), \
                 (SELECT count(*) FROM jobs WHERE kind IN ('merge', 'compact') AND state = 'failed')",
                &[],
            )
            .await
            .unwrap();
        let (busy, failed): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(failed, 0, "a merge or compaction failed");
        if busy == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{busy} jobs still busy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = client
        .query_one(
            "SELECT c.id, c.tenant_id, c.open_segment FROM collections c WHERE name = 'crash'",
            &[],
        )
        .await
        .unwrap();
    let tables = onebase::knowledge::ddl::Tables::new(row.get(1), row.get(0));
    let open: i32 = row.get(2);
    let chunks = &tables.chunks;
    let counts = client
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT document_id), \
                   count(*) FILTER (WHERE document_id = ANY($1)) FROM {chunks}"
            ),
            &[&acked],
        )
        .await
        .unwrap();
    let (rows, distinct, found): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
    assert_eq!(found, acked.len() as i64, "every acknowledged row is there");
    assert_eq!(rows, distinct, "no row is there twice");
    assert_eq!(rows, acked.len() as i64, "and nothing else is");
    let unindexed: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid \
                 WHERE h.inhparent = '{chunks}'::regclass AND c.relname <> '{open}' AND NOT EXISTS ( \
                   SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                   WHERE i.indrelid = c.oid AND i.indisvalid AND ic.relname = c.relname || '_embedding_idx')",
                open = tables.segment_bare(open)
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unindexed, 0, "every sealed segment has a valid graph");
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c WHERE c.relname LIKE 'chunks%\\_s%' AND c.relkind = 'r' \
               AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "an unattached segment or versions table was left behind");
    let invalid: i64 = client
        .query_one("SELECT count(*) FROM pg_index WHERE NOT indisvalid", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(invalid, 0, "an interrupted build's invalid index was left behind");
    for i in [0, next / 2, next - 1] {
        let res: serde_json::Value = post(
            "/v1/collections/crash/search",
            &key,
            serde_json::json!({"vector": vector(i), "k": 1, "include": []}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(res["hits"][0]["document_id"], format!("r{i}"), "{res}");
    }
    signal(&server, nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait().unwrap().success());
}
