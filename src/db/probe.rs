//! The startup probe: every pgvector operation onebase relies on, run once on a throwaway
//! connection before the server serves.
//!
//! A pgvector library compiled for a bigger CPU than this one (AVX-512 in its ordinary functions,
//! from `-march=native` on the build machine) loads fine and answers every catalog query; the
//! first distance computed kills the backend with SIGILL, and PostgreSQL then restarts every
//! connection. Serving on such a database is a crash loop: every search fails with 503, and so
//! does any request that happens to be running beside one. The probe finds it first, names the
//! step that died, and stops startup with the cause, for the embedded cluster and for an external
//! `DATABASE_URL` alike. Since it runs before the HTTP listener is bound, `/ready` cannot answer
//! before it has passed.
//!
//! The probe writes nothing: its one transaction (which creates the extension when the database
//! does not have it yet, and a temporary table) is rolled back.

use std::path::Path;

use anyhow::Context;
use pgvector::Vector;

/// Dimensions and rows of the probe's table (as its SQL below writes them): enough rows for HNSW
/// to build a graph with more than one layer's worth of neighbours and for IVFFlat's k-means to
/// run, few enough to cost milliseconds.
const DIM: usize = 16;
const ROWS: i32 = 201;

/// One step of the probe: what it exercises, and its SQL.
struct Step {
    what: &'static str,
    sql: &'static str,
}

const SETUP: &[Step] = &[
    Step {
        what: "creating the vector extension (rolled back)",
        sql: "CREATE EXTENSION IF NOT EXISTS vector",
    },
    Step {
        what: "writing vectors (array_to_vector, vector_in)",
        sql: "CREATE TEMP TABLE onebase_vector_probe (id int PRIMARY KEY, v vector(16)) ON COMMIT DROP;
              INSERT INTO onebase_vector_probe
                  SELECT i, l2_normalize(ARRAY(SELECT sin(i * 0.37 + j * 1.3)::real FROM generate_series(1, 16) j)::vector(16))
                  FROM generate_series(1, 200) i;
              INSERT INTO onebase_vector_probe VALUES (0, '[0.8,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.6]')",
    },
];

/// Steps that take the query vector (binary, as the server sends it) and return the id of its
/// nearest row, which must be the row the query vector was read from (the vectors are unit
/// vectors, so that holds for the inner product too).
const SEARCHES: &[Step] = &[
    Step {
        what: "exact distances (cosine <=>, l2 <->, inner product <#>, vector_norm, l2_normalize, halfvec)",
        sql: "SELECT id FROM onebase_vector_probe
              WHERE (v <=> $1) + (v <-> $1) + (v <#> $1) + vector_norm(v) + (l2_normalize(v) <=> $1)
                    + (v::halfvec(16) <=> $1::halfvec(16)) IS NOT NULL
              ORDER BY v <=> $1, id LIMIT 1",
    },
    Step {
        what: "an HNSW index build and scan (cosine)",
        sql: "CREATE INDEX onebase_vector_probe_hnsw_cos ON onebase_vector_probe USING hnsw (v vector_cosine_ops);
              SET LOCAL enable_seqscan = off;
              SELECT id FROM onebase_vector_probe ORDER BY v <=> $1 LIMIT 1",
    },
    Step {
        what: "an HNSW index build and scan (l2)",
        sql: "CREATE INDEX onebase_vector_probe_hnsw_l2 ON onebase_vector_probe USING hnsw (v vector_l2_ops);
              SELECT id FROM onebase_vector_probe ORDER BY v <-> $1 LIMIT 1",
    },
    Step {
        what: "an HNSW index build and scan (inner product)",
        sql: "CREATE INDEX onebase_vector_probe_hnsw_ip ON onebase_vector_probe USING hnsw (v vector_ip_ops);
              SELECT id FROM onebase_vector_probe ORDER BY v <#> $1 LIMIT 1",
    },
    Step {
        what: "an IVFFlat index build (k-means) and scan",
        sql: "DROP INDEX onebase_vector_probe_hnsw_l2;
              CREATE INDEX onebase_vector_probe_ivf ON onebase_vector_probe USING ivfflat (v vector_l2_ops) WITH (lists = 4);
              SET LOCAL ivfflat.probes = 4;
              SELECT id FROM onebase_vector_probe ORDER BY v <-> $1 LIMIT 1",
    },
];

/// The probe failed because a backend died under it: the message operators see.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database's PostgreSQL backend died while onebase checked pgvector ({step}; {error}): the vector extension most likely \
     uses CPU instructions this machine lacks (a build made with -march=native on a CPU with AVX-512). onebase \
     needs a pgvector whose code runs on x86-64-v3 (AVX2) CPUs, with AVX-512 only behind its runtime CPU checks; \
     for the embedded cluster, run scripts/bootstrap, which installs such a build and refuses others. Not serving, \
     since every vector search would crash the database again.{log}"
)]
pub struct BackendDied {
    pub step: &'static str,
    /// What the client saw (the connection closing).
    pub error: String,
    /// The server log's lines about the crash, when onebase can read the log (embedded cluster).
    pub log: String,
}

/// Runs the probe on a connection of its own (dropped afterwards), unless this server passed it
/// already. `server_log` is the embedded cluster's log, quoted in the error when a backend dies.
pub async fn once_per_server(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
    server_log: Option<&Path>,
) -> anyhow::Result<()> {
    // What the probe tests is the server's binaries, which do not change while this process
    // runs: a server (hosts and ports) that passed once is not probed again. A server process
    // builds one application, so this only spares the test suite, which builds hundreds of
    // applications on one cluster, a probe each.
    let server = format!("{:?} {:?}", config.get_hosts(), config.get_ports());
    if PASSED.lock().is_ok_and(|passed| passed.contains(&server)) {
        return Ok(());
    }
    run(config, ca_file, server_log).await?;
    if let Ok(mut passed) = PASSED.lock() {
        passed.insert(server);
    }
    Ok(())
}

static PASSED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The probe itself, every time (tests call it directly).
pub async fn run(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
    server_log: Option<&Path>,
) -> anyhow::Result<()> {
    // Only what the log says from here on is about this probe.
    let log_start = server_log.map(|log| std::fs::metadata(log).map_or(0, |m| m.len()));
    // A pool of one, dropped at the end: the same TLS handling as the server's connections.
    let pool = super::build_pool(config.clone(), 1, ca_file)?;
    let started = std::time::Instant::now();
    let result = {
        let mut client = pool
            .get()
            .await
            .context("connecting to PostgreSQL for the pgvector probe")?;
        // A server without pgvector, or with one too old, is told as such rather than as a
        // failed probe step.
        super::check_vector_available(&client).await?;
        let tx = client.transaction().await.context("starting the pgvector probe")?;
        // Dropped without a commit: rolled back, the probe leaves nothing behind.
        steps(&tx).await
    };
    match result {
        Ok(()) => {
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                rows = ROWS,
                "pgvector probe passed"
            );
            Ok(())
        }
        Err(err) => match err.downcast::<BackendDied>() {
            Ok(mut died) => {
                // PostgreSQL restarts after a backend's crash and replays its WAL; a shutdown
                // asked for in the middle of that replay waited a minute in tests. Let it finish,
                // then read its log.
                wait_for_recovery(&pool).await;
                if let (Some(log), Some(start)) = (server_log, log_start) {
                    died.log = crash_lines(log, start);
                }
                Err(anyhow::Error::new(died))
            }
            Err(err) => Err(err),
        },
    }
}

async fn steps(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
    for step in SETUP {
        tx.batch_execute(step.sql).await.map_err(|err| classify(err, step))?;
    }
    // The query vector is row 7's, read back in binary (vector_send) and sent in binary
    // (vector_recv), as every search sends its query.
    let row = tx
        .query_one("SELECT v FROM onebase_vector_probe WHERE id = 7", &[])
        .await
        .map_err(|err| classify(err, &SETUP[1]))?;
    let query: Vector = row.try_get(0).context("reading a vector back (vector_send)")?;
    anyhow::ensure!(
        query.as_slice().len() == DIM,
        "the pgvector probe read back a vector of the wrong size"
    );
    for step in SEARCHES {
        // Everything before the last statement is set-up; the last one returns the nearest id.
        let (setup, search) = step.sql.rsplit_once(';').unwrap_or(("", step.sql));
        if !setup.trim().is_empty() {
            tx.batch_execute(setup).await.map_err(|err| classify(err, step))?;
        }
        let row = tx
            .query_one(search, &[&query])
            .await
            .map_err(|err| classify(err, step))?;
        let nearest: i32 = row.try_get(0).context("reading the pgvector probe's answer")?;
        anyhow::ensure!(
            nearest == 7,
            "pgvector computed wrong distances in {}: the nearest row to row 7's vector was row {nearest} \
             (the vector extension is broken on this machine; not serving)",
            step.what
        );
    }
    Ok(())
}

/// Waits up to 30 s for the database to accept a connection again after a backend's crash.
async fn wait_for_recovery(pool: &deadpool_postgres::Pool) {
    for _ in 0..100 {
        if let Ok(client) = pool.get().await {
            if client.simple_query("SELECT 1").await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A failed step: a dead backend is [`BackendDied`]; any other error is reported as itself.
fn classify(err: tokio_postgres::Error, step: &Step) -> anyhow::Error {
    // A backend that dies mid-query leaves no SQL error: the connection just closes (or, when
    // the postmaster got to it first, ends with "terminating connection because of crash of
    // another server process", SQLSTATE 57P02 crash_shutdown).
    let crashed = err.is_closed()
        || err.code() == Some(&tokio_postgres::error::SqlState::CRASH_SHUTDOWN)
        || (err.as_db_error().is_none() && std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()));
    if crashed {
        anyhow::Error::new(BackendDied {
            step: step.what,
            error: err.to_string(),
            log: String::new(),
        })
    } else {
        anyhow::Error::new(err).context(format!("the pgvector probe failed while {}", step.what))
    }
}

/// The server log's lines since `start` that tell why a backend died (signal 4 is SIGILL).
fn crash_lines(log: &Path, start: u64) -> String {
    // What the log says since the probe began; a crash's lines are the last few.
    let text = super::cluster::tail_from(log, start, 200);
    let lines: Vec<&str> = text
        .lines()
        .rev()
        .filter(|l| l.contains("terminated by signal") || l.contains("Failed process was running"))
        .take(4)
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("\nThe server log ({}) says:", log.display());
    for line in lines.into_iter().rev() {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}
