//! Point-in-time recovery of the embedded cluster: a physical base backup (`pg_basebackup`)
//! plus the WAL archived by `--wal-archive`, replayed up to a chosen moment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::backup::{BackupReport, Target};
use crate::db::embedded::{EmbeddedOptions, EmbeddedPostgres};

/// Takes a physical base backup of the whole cluster into `dir` (new or empty), with the WAL
/// needed to make it consistent, while the server keeps serving.
pub fn base_backup(bin_dir: &Path, target: &Target, dir: &Path) -> anyhow::Result<BackupReport> {
    ensure_empty_dir(dir)?;
    let started = Instant::now();
    let output = Command::new(bin_dir.join("pg_basebackup"))
        .args(target.server_args())
        .arg(format!("--pgdata={}", dir.display()))
        .args(["--wal-method=stream", "--checkpoint=fast", "--no-password"])
        .output()
        .with_context(|| format!("running {}", bin_dir.join("pg_basebackup").display()))?;
    if !output.status.success() {
        bail!(
            "pg_basebackup failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(BackupReport {
        file: dir.to_path_buf(),
        bytes: dir_size(dir),
        duration: started.elapsed(),
    })
}

/// Parses `--to-time`: RFC 3339 (`2026-11-23T10:15:00Z`, `2026-11-23 10:15:00+01:00`).
pub fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .or_else(|_| DateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f%:z"))
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("--to-time {text:?} is not an RFC 3339 time such as 2026-11-23T10:15:00Z"))
}

/// Makes `opts.data_dir` (new or empty) a copy of the base backup `base` that replays the WAL of
/// `archive` up to `to_time` (or to the archive's end) on its first start, then promotes to a
/// normal cluster. Returns the started cluster and how long recovery took.
pub fn restore_base(
    opts: EmbeddedOptions,
    base: &Path,
    archive: &Path,
    to_time: Option<DateTime<Utc>>,
) -> anyhow::Result<(EmbeddedPostgres, Duration)> {
    if !base.join("PG_VERSION").exists() {
        bail!(
            "{} is not a base backup (no PG_VERSION); take one with `onebase backup --base DIR`",
            base.display()
        );
    }
    if !archive.is_dir() {
        bail!("the WAL archive {} does not exist", archive.display());
    }
    let data_dir = opts.data_dir.clone();
    ensure_empty_dir(&data_dir)?;
    let started = Instant::now();
    let result = (|| {
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.display()))
            .arg(&data_dir)
            .status()
            .context("copying the base backup")?;
        if !status.success() {
            bail!("copying {} to {} failed", base.display(), data_dir.display());
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;
        crate::db::embedded::give_to_postgres_user(&data_dir, &opts.os_user)?;
        let archive = std::fs::canonicalize(archive)?
            .display()
            .to_string()
            .replace('\'', "''");
        let mut conf = format!(
            "\n# onebase restore --base\nrestore_command = 'cp \"{archive}/%f\" \"%p\"'\nrecovery_target_action = 'promote'\n"
        );
        if let Some(t) = to_time {
            conf.push_str(&format!(
                "recovery_target_time = '{}'\n",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00")
            ));
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.auto.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("writing the recovery settings")?;
        std::fs::write(data_dir.join("recovery.signal"), b"").context("writing recovery.signal")?;
        // Postgres promotes once it reached the target, which is when it says it accepts
        // (read-write) connections: `start` waits for exactly that.
        let cluster = EmbeddedPostgres::start(opts).map_err(|e| anyhow::anyhow!("recovery failed: {e}"))?;
        Ok(cluster)
    })();
    match result {
        Ok(cluster) => Ok((cluster, started.elapsed())),
        Err(err) => {
            // The target was new or empty: leave it so, and the base backup untouched.
            let _ = std::fs::remove_dir_all(&data_dir);
            Err(err)
        }
    }
}

/// Refuses a directory that exists with something in it.
pub fn ensure_empty_dir(dir: &Path) -> anyhow::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} is not empty; refusing to overwrite it (choose a new directory)",
                dir.display()
            );
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339() {
        assert_eq!(
            parse_time("2026-11-23T10:15:00Z").unwrap().to_rfc3339(),
            "2026-11-23T10:15:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-23 11:15:00+01:00").unwrap().to_rfc3339(),
            "2026-11-23T10:15:00+00:00"
        );
        assert!(parse_time("yesterday").is_err());
    }
}
