//! The embedded cluster's supervisor thread: it owns the postmaster child, waits for it, and
//! starts it again when it dies without being asked to.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

use super::cluster::{io_err, tail_from, EmbeddedError, EmbeddedOptions};
use super::pidfile::recover_stale_postmaster;

/// What the supervisor thread and the handle share.
#[derive(Default)]
pub(super) struct Shared {
    /// The running postmaster's pid (0 between a crash and the restart).
    pub(super) pid: AtomicI32,
    /// Set by `stop`: the next exit is final.
    pub(super) stopping: AtomicBool,
    /// The first start succeeded; until then an exit is a startup failure, not restarted.
    pub(super) started: AtomicBool,
    /// Restarts after an unexpected exit.
    pub(super) restarts: AtomicU64,
    /// The final exit status, once the supervisor gave up or was told to stop.
    pub(super) exit: (Mutex<Option<ExitStatus>>, Condvar),
}

/// Everything needed to start the postmaster again.
pub(super) struct Launch {
    pub(super) postgres_bin: PathBuf,
    pub(super) opts: EmbeddedOptions,
    pub(super) socket_dir: PathBuf,
    pub(super) settings: Vec<(String, String)>,
    pub(super) log_path: PathBuf,
    pub(super) run_as: Option<(Uid, Gid)>,
}

impl Launch {
    fn command(&self) -> Result<Command, EmbeddedError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_err(format!("opening {}", self.log_path.display())))?;
        let mut cmd = Command::new(&self.postgres_bin);
        cmd.arg("-D")
            .arg(&self.opts.data_dir)
            .arg("-c")
            .arg(format!("port={}", self.opts.port))
            .arg("-c")
            .arg(format!("listen_addresses={}", self.opts.listen_addresses))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.socket_dir.display()))
            .arg("-c")
            .arg("unix_socket_permissions=0700");
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("duplicating the log handle"))?)
            .stderr(log)
            .current_dir(&self.opts.data_dir)
            // Own process group: a terminal's Ctrl-C reaches onebase only, which then drains
            // requests before it stops Postgres itself.
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let parent_pid = std::process::id() as libc::pid_t;
        // SAFETY: the closure only makes async-signal-safe syscalls (prctl, getppid, _exit).
        // std runs it after switching uid/gid, which matters: a credential change clears the
        // parent-death signal.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent_pid {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// The supervisor thread: starts the postmaster, waits for it, and when it dies without being
/// asked to (a crash, an OOM kill, `kill -9`) logs why and starts it again with backoff
/// (0.5 s doubling to 30 s; reset once it ran a minute). Postgres replays its WAL on that
/// start, so every committed transaction is there again. The first start's pid or error goes to
/// `first`; the thread ends when `stop` was called.
pub(super) fn supervise(launch: Launch, shared: Arc<Shared>, first: std::sync::mpsc::Sender<std::io::Result<i32>>) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(500);
    let finish = |status: ExitStatus| {
        let (lock, cvar) = &shared.exit;
        if let Ok(mut slot) = lock.lock() {
            *slot = Some(status);
        }
        cvar.notify_all();
    };
    loop {
        let spawned = launch
            .command()
            .and_then(|mut cmd| cmd.spawn().map_err(io_err("starting postgres")));
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(std::io::Error::other(err.to_string())));
                    return finish(ExitStatus::default());
                }
                tracing::error!(error = %err, "restarting the embedded postgres failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        shared.pid.store(child.id() as i32, Ordering::SeqCst);
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(child.id() as i32));
        }
        let started = Instant::now();
        let log_start = fs::metadata(&launch.log_path).map(|m| m.len()).unwrap_or(0);
        let status = child.wait().unwrap_or_default();
        shared.pid.store(0, Ordering::SeqCst);
        if shared.stopping.load(Ordering::SeqCst) || !shared.started.load(Ordering::SeqCst) {
            return finish(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        tracing::error!(
            %status,
            restart_in_ms = backoff.as_millis() as u64,
            log = %tail_from(&launch.log_path, log_start, 5),
            "the embedded postgres exited unexpectedly; restarting it"
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(30));
        if shared.stopping.load(Ordering::SeqCst) {
            return finish(status);
        }
        // A postmaster killed outright leaves its pid file, and its backends exit only when
        // they notice; a start that finds them still there fails and is retried.
        if let Err(err) = recover_stale_postmaster(&launch.opts.data_dir, &launch.socket_dir, launch.opts.port) {
            tracing::warn!(error = %err, "cleaning up after the dead postgres");
        }
        shared.restarts.fetch_add(1, Ordering::SeqCst);
    }
}
