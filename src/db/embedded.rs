//! The embedded PostgreSQL supervisor.
//!
//! With no `DATABASE_URL`, onebase runs its own cluster: `initdb` on first start, then the
//! `postgres` binary as a child process that listens on a unix socket inside the data directory
//! (and on TCP only when asked). The supervisor:
//!
//! * runs Postgres as an unprivileged OS user when onebase itself runs as root (Postgres refuses
//!   to run as root);
//! * sizes the memory settings from the machine instead of using stock defaults (see
//!   [`tuned_settings`]);
//! * recovers from a crash: a half-finished `initdb` is discarded, a stale `postmaster.pid` is
//!   removed, and a Postgres left running by a killed onebase is shut down before restarting;
//! * arms the child with `PR_SET_PDEATHSIG` so that even `kill -9` of onebase makes Postgres do a
//!   fast, clean shutdown instead of running on orphaned.
//!
//! The child is spawned from a dedicated thread that lives exactly as long as the child (it
//! blocks in `wait`). That matters: the kernel delivers the parent-death signal when the
//! *thread* that forked the child exits, so forking from a short-lived runtime thread would kill
//! Postgres at a random moment. The thread itself is in [`super::supervisor`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use super::cluster::io_err;
pub use super::cluster::{log_path, tail_from, EmbeddedError, EmbeddedOptions};
use super::pidfile::recover_stale_postmaster;
pub use super::pidfile::{running_socket, write_fake_postmaster_pid};
use super::supervisor::{supervise, Launch, Shared};

/// The database superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";

/// Settings sized for this workload from the machine's memory and cores, replacing the stock
/// defaults (128 MB `shared_buffers` is less than one 100k x 384 HNSW index).
pub fn tuned_settings(total_memory_bytes: u64, cores: usize) -> Vec<(String, String)> {
    const MB: u64 = 1024 * 1024;
    let mem_mb = (total_memory_bytes / MB).max(512);
    // A quarter of memory for shared buffers, the usual starting point, capped where returns
    // diminish and the OS page cache does better.
    let shared_buffers = (mem_mb / 4).clamp(128, 8 * 1024);
    let effective_cache = (mem_mb * 3 / 4).max(shared_buffers);
    // HNSW builds are much faster when the graph fits in maintenance_work_mem.
    let maintenance = (mem_mb / 8).clamp(64, 4 * 1024);
    let work_mem = (mem_mb / 256).clamp(4, 64);
    let maint_workers = cores.saturating_sub(1).clamp(1, 8);
    let worker_processes = (cores * 2).max(8);
    vec![
        ("shared_buffers".into(), format!("{shared_buffers}MB")),
        ("effective_cache_size".into(), format!("{effective_cache}MB")),
        ("maintenance_work_mem".into(), format!("{maintenance}MB")),
        ("work_mem".into(), format!("{work_mem}MB")),
        ("max_wal_size".into(), "4GB".into()),
        ("min_wal_size".into(), "256MB".into()),
        ("max_worker_processes".into(), worker_processes.to_string()),
        ("max_parallel_workers".into(), cores.max(2).to_string()),
        ("max_parallel_maintenance_workers".into(), maint_workers.to_string()),
        ("max_connections".into(), "200".into()),
    ]
}

/// Continuous WAL archiving into `dir` (created, and owned by the Postgres user): a segment is
/// copied when it fills or after `archive_timeout` (60 s), so a point-in-time restore loses at
/// most that minute. `test ! -f` never overwrites an archived segment.
fn archive_settings(dir: &Path, run_as: Option<&RunAs>) -> Result<Vec<(String, String)>, EmbeddedError> {
    fs::create_dir_all(dir).map_err(io_err(format!("creating the WAL archive {}", dir.display())))?;
    chown_to(dir, run_as)?;
    let quoted = dir.display().to_string().replace('\'', "'\\''");
    Ok(vec![
        ("wal_level".into(), "replica".into()),
        ("archive_mode".into(), "on".into()),
        (
            "archive_command".into(),
            format!("test ! -f '{quoted}/%f' && cp %p '{quoted}/%f'"),
        ),
        ("archive_timeout".into(), "60".into()),
    ])
}

/// Total physical memory, from /proc/meminfo (falls back to 1 GiB if unreadable).
pub fn total_memory_bytes() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(1 << 30)
}

/// A running embedded cluster. Dropping it stops Postgres.
pub struct EmbeddedPostgres {
    opts: EmbeddedOptions,
    socket_dir: PathBuf,
    shared: Arc<Shared>,
    settings: Vec<(String, String)>,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.opts.data_dir)
            .field("pid", &self.pid())
            .finish()
    }
}

struct RunAs {
    name: String,
    uid: Uid,
    gid: Gid,
}

impl EmbeddedPostgres {
    /// Initializes the cluster if needed, recovers from a previous crash and starts Postgres.
    /// Blocking: call it from a plain thread or `spawn_blocking` (the child itself is owned by a
    /// dedicated thread, see the module docs).
    pub fn start(mut opts: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        // Absolute paths: Postgres and initdb run from other working directories.
        opts.bin_dir = absolute(&opts.bin_dir)?;
        opts.data_dir = absolute(&opts.data_dir)?;
        let postgres_bin = opts.bin_dir.join("postgres");
        let initdb_bin = opts.bin_dir.join("initdb");
        for bin in [&postgres_bin, &initdb_bin] {
            if !bin.exists() {
                return Err(EmbeddedError::BinariesMissing(bin.clone()));
            }
        }
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(&opts.os_user)
                .ok()
                .flatten()
                .ok_or_else(|| EmbeddedError::UserMissing(opts.os_user.clone()))?;
            Some(RunAs {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
            })
        } else {
            None
        };
        if let Some(run_as) = &run_as {
            check_runnable(&postgres_bin, run_as)?;
        }

        fs::create_dir_all(opts.data_dir.parent().unwrap_or(Path::new(".")))
            .map_err(io_err("creating the data directory's parent"))?;
        init_cluster(&opts, &initdb_bin, run_as.as_ref())?;
        let socket_dir = socket_dir_for(&opts.data_dir, opts.port, run_as.as_ref())?;
        recover_stale_postmaster(&opts.data_dir, &socket_dir, opts.port)?;

        let mut settings = tuned_settings(total_memory_bytes(), num_cpus::get());
        if let Some(archive) = &opts.wal_archive {
            settings.extend(archive_settings(&absolute(archive)?, run_as.as_ref())?);
        }
        for (name, value) in &opts.overrides {
            settings.retain(|(n, _)| n != name);
            settings.push((name.clone(), value.clone()));
        }
        let log_path = log_path(&opts.data_dir);
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let launch = Launch {
            postgres_bin: postgres_bin.clone(),
            opts: opts.clone(),
            socket_dir: socket_dir.clone(),
            settings: settings.clone(),
            log_path: log_path.clone(),
            run_as: run_as.as_ref().map(|r| (r.uid, r.gid)),
        };
        let shared = Arc::new(Shared::default());
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("pg-supervisor".into())
            .spawn(move || supervise(launch, for_thread, pid_tx))
            .map_err(io_err("spawning the supervisor thread"))?;
        let pid = pid_rx
            .recv()
            .map_err(|_| EmbeddedError::Io {
                context: "supervisor thread vanished".into(),
                source: std::io::Error::other("channel closed"),
            })?
            .map_err(io_err(format!("starting {}", postgres_bin.display())))?;

        let pg = EmbeddedPostgres {
            opts,
            socket_dir,
            shared,
            settings,
        };
        pg.wait_until_ready(&log_path, log_start)?;
        pg.shared.started.store(true, Ordering::SeqCst);
        tracing::info!(pid, data_dir = %pg.opts.data_dir.display(), socket_dir = %pg.socket_dir.display(),
            port = pg.opts.port, "embedded postgres is ready");
        Ok(pg)
    }

    fn wait_until_ready(&self, log_path: &Path, log_start: u64) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        let socket = self.socket_dir.join(format!(".s.PGSQL.{}", self.opts.port));
        let ready_line = match self.opts.data_dir.join("standby.signal").exists() {
            true => "ready to accept read-only connections",
            false => "ready to accept connections",
        };
        loop {
            if let Some(status) = self.exit_status() {
                return Err(EmbeddedError::ExitedDuringStartup {
                    status: status.to_string(),
                    log: tail_from(log_path, log_start, 20),
                });
            }
            // The socket appears once the postmaster listens; the "ready to accept connections"
            // line follows once recovery is done (on a streaming replica, which stays in
            // recovery: "... read-only connections"). Checking both avoids connecting during
            // recovery, which Postgres answers with an error.
            if socket.exists() && tail_from(log_path, log_start, 200).contains(ready_line) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::StartTimeout(
                    self.opts.start_timeout,
                    log_path.to_path_buf(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The final exit status: set once the cluster was stopped (or could not start again).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.exit.0.lock().ok().and_then(|s| *s)
    }

    /// The running postmaster's pid; 0 while it is being restarted.
    pub fn pid(&self) -> i32 {
        self.shared.pid.load(Ordering::SeqCst)
    }

    /// How often the supervisor restarted Postgres after it died.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    pub fn data_dir(&self) -> &Path {
        &self.opts.data_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        self.opts.port
    }

    /// The settings the cluster was started with (tuned values after overrides).
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// A client config for the given database, as the superuser, over the unix socket.
    pub fn client_config(&self, dbname: &str) -> tokio_postgres::Config {
        socket_config(&self.socket_dir, self.opts.port, dbname)
    }

    /// Fast shutdown: Postgres rolls back open transactions, checkpoints and exits. Escalates to
    /// an immediate shutdown (SIGQUIT) and then SIGKILL if it does not finish in time.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if self.exit_status().is_some() {
            return;
        }
        // Between a crash and the restart the supervisor sees `stopping` and ends, unless it was
        // already starting Postgres again: then stop that one.
        let deadline = Instant::now() + Duration::from_secs(35);
        let pid = loop {
            match self.pid() {
                _ if self.exit_status().is_some() => return,
                0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                0 => return,
                pid => break Pid::from_raw(pid),
            }
        };
        for (signal, grace) in [
            (Signal::SIGINT, Duration::from_secs(60)),
            (Signal::SIGQUIT, Duration::from_secs(10)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if kill(pid, signal).is_err() {
                break;
            }
            let (lock, cvar) = &self.shared.exit;
            let Ok(guard) = lock.lock() else { return };
            let waited = cvar.wait_timeout_while(guard, grace, |status| status.is_none());
            if matches!(waited, Ok((ref status, _)) if status.is_some()) {
                tracing::info!(%pid, "embedded postgres stopped");
                return;
            }
            tracing::warn!(%pid, ?signal, "postgres did not stop in time; escalating");
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(io_err("reading the current directory"))?
            .join(path))
    }
}

/// Runs `postgres --version` as the target user, so that an unreadable install path is reported
/// as such instead of as a cryptic initdb failure.
fn check_runnable(postgres_bin: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    let out = Command::new(postgres_bin)
        .arg("--version")
        .uid(run_as.uid.as_raw())
        .gid(run_as.gid.as_raw())
        .current_dir("/")
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(EmbeddedError::BinaryNotAccessible {
            user: run_as.name.clone(),
            binary: postgres_bin.to_path_buf(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(err) => Err(EmbeddedError::BinaryNotAccessible {
            user: run_as.name.clone(),
            binary: postgres_bin.to_path_buf(),
            detail: err.to_string(),
        }),
    }
}

fn chown_to(path: &Path, run_as: Option<&RunAs>) -> Result<(), EmbeddedError> {
    if let Some(run_as) = run_as {
        nix::unistd::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(|e| EmbeddedError::Io {
            context: format!("chown {} to {}", path.display(), run_as.name),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Runs initdb unless the data directory already holds a cluster. initdb works in a sibling
/// temporary directory that is renamed into place only on success, so an interrupted initdb
/// leaves nothing that looks like a cluster; its leftovers are removed on the next start.
fn init_cluster(opts: &EmbeddedOptions, initdb_bin: &Path, run_as: Option<&RunAs>) -> Result<(), EmbeddedError> {
    let data_dir = &opts.data_dir;
    let tmp = data_dir.with_file_name(format!(
        "{}.initdb-tmp",
        data_dir.file_name().and_then(|n| n.to_str()).unwrap_or("postgres")
    ));
    if tmp.exists() {
        tracing::warn!(path = %tmp.display(), "removing an unfinished initdb");
        fs::remove_dir_all(&tmp).map_err(io_err(format!("removing {}", tmp.display())))?;
    }
    if data_dir.join("PG_VERSION").exists() {
        // An existing cluster: make sure Postgres can still own it (e.g. after a restore).
        return Ok(());
    }
    if data_dir.exists() {
        let empty = fs::read_dir(data_dir)
            .map_err(io_err(format!("reading {}", data_dir.display())))?
            .next()
            .is_none();
        if !empty {
            return Err(EmbeddedError::NotADataDir { path: data_dir.clone() });
        }
        fs::remove_dir(data_dir).map_err(io_err(format!("removing empty {}", data_dir.display())))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod 700 on the data directory"))?;
    chown_to(&tmp, run_as)?;
    tracing::info!(data_dir = %data_dir.display(), "initializing a new PostgreSQL cluster");
    let mut cmd = Command::new(initdb_bin);
    cmd.arg("-D")
        .arg(&tmp)
        .args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ])
        .current_dir("/")
        .stdin(Stdio::null());
    if let Some(run_as) = run_as {
        cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    let out = cmd
        .output()
        .map_err(io_err(format!("running {}", initdb_bin.display())))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(EmbeddedError::InitdbFailed {
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    fs::rename(&tmp, data_dir).map_err(io_err(format!("moving the new cluster into {}", data_dir.display())))?;
    Ok(())
}

/// The socket lives in the data directory (private: mode 0700, owned by the Postgres user).
/// Unix socket paths are limited to ~107 bytes, so a deep data directory falls back to a
/// per-cluster directory under /tmp.
fn socket_dir_for(data_dir: &Path, port: u16, run_as: Option<&RunAs>) -> Result<PathBuf, EmbeddedError> {
    let socket_name_len = format!("/.s.PGSQL.{port}").len();
    if data_dir.as_os_str().len() + socket_name_len < 100 {
        return Ok(data_dir.to_path_buf());
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let dir = std::env::temp_dir().join(format!("onebase-pg-{:016x}", hasher.finish()));
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("chmod 700 on the socket directory"))?;
    chown_to(&dir, run_as)?;
    Ok(dir)
}

/// A client config for `dbname` as the superuser, over the unix socket in `socket_dir`.
pub fn socket_config(socket_dir: &Path, port: u16, dbname: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(SUPERUSER)
        .dbname(dbname)
        .application_name("onebase");
    cfg
}

/// When onebase runs as root, hands `path` (recursively) to the OS user Postgres runs as, e.g. a
/// data directory copied from a base backup.
pub fn give_to_postgres_user(path: &Path, os_user: &str) -> Result<(), EmbeddedError> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{os_user}:"))
        .arg(path)
        .status()
        .map_err(io_err("running chown"))?;
    if !status.success() {
        return Err(EmbeddedError::Io {
            context: format!("chown -R {os_user}: {}", path.display()),
            source: std::io::Error::other(status.to_string()),
        });
    }
    Ok(())
}
