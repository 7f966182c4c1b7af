//! The data directory's `postmaster.pid`: whose it is, what it says, and what to do with one
//! left by a previous run.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cluster::{io_err, EmbeddedError};

/// The lines of `data_dir`'s `postmaster.pid`, if it has one.
fn read_lines(data_dir: &Path) -> Option<Vec<String>> {
    let contents = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    Some(contents.lines().map(str::to_string).collect())
}

/// The pid the file names (its first line).
fn pid_of(lines: &[String]) -> Option<i32> {
    lines.first()?.trim().parse().ok()
}

/// Deals with a `postmaster.pid` left by a previous run:
/// * the process is gone, or the pid now belongs to something else (pid reuse, common in
///   containers) -> the file and the socket lock are stale: remove them;
/// * it is still our postmaster (onebase was killed and Postgres outlived it) -> ask it to shut
///   down cleanly and wait, then start afresh.
pub(super) fn recover_stale_postmaster(data_dir: &Path, socket_dir: &Path, port: u16) -> Result<(), EmbeddedError> {
    let pid_file = data_dir.join("postmaster.pid");
    let Some(lines) = read_lines(data_dir) else {
        return Ok(());
    };
    let pid = pid_of(&lines).unwrap_or(0);
    if pid > 0 && is_postmaster_of(pid, data_dir) {
        tracing::warn!(
            pid,
            "a postgres from a previous run is still running on this data directory; stopping it"
        );
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if kill(Pid::from_raw(pid), None).is_ok() {
            return Err(EmbeddedError::StalePostmasterAlive(pid));
        }
        return Ok(());
    }
    tracing::warn!(pid, "removing a stale postmaster.pid");
    fs::remove_file(&pid_file).map_err(io_err("removing the stale postmaster.pid"))?;
    let lock = socket_dir.join(format!(".s.PGSQL.{port}.lock"));
    if lock.exists() {
        let _ = fs::remove_file(socket_dir.join(format!(".s.PGSQL.{port}")));
        fs::remove_file(&lock).map_err(io_err("removing the stale socket lock"))?;
    }
    Ok(())
}

/// A live process is our postmaster if it is a `postgres` whose working directory is the data
/// directory (the postmaster chdirs into it).
fn is_postmaster_of(pid: i32, data_dir: &Path) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let data_dir = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    comm.trim() == "postgres" && cwd.as_deref() == Some(data_dir.as_path())
}

/// The unix socket directory and port of a postmaster already running on `data_dir` (a serving
/// onebase's cluster), read from its `postmaster.pid`; `None` when none runs.
pub fn running_socket(data_dir: &Path) -> Option<(PathBuf, u16)> {
    let lines = read_lines(data_dir)?;
    if !is_postmaster_of(pid_of(&lines)?, data_dir) {
        return None;
    }
    let port: u16 = lines.get(3)?.trim().parse().ok()?;
    let socket = lines.get(4)?.trim();
    (!socket.is_empty()).then(|| (PathBuf::from(socket), port))
}

/// Writes a fake `postmaster.pid` for tests of the stale-file recovery.
#[doc(hidden)]
pub fn write_fake_postmaster_pid(data_dir: &Path, pid: i32) -> std::io::Result<()> {
    let mut f = fs::File::create(data_dir.join("postmaster.pid"))?;
    writeln!(f, "{pid}\n{}\n0\n5432\n\n\n", data_dir.display())
}
