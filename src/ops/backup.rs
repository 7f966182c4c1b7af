//! Logical backups with the PostgreSQL client tools bootstrap installs: `pg_dump` in custom
//! format while the server keeps serving (one MVCC snapshot, so the dump is consistent), and
//! `pg_restore` into an empty target after the file was checked end to end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How the client tools reach the database: libpq arguments.
#[derive(Debug, Clone)]
pub struct Target {
    args: Vec<String>,
    /// What to print: never the password.
    pub describe: String,
    /// The database's name.
    pub db_name: String,
}

impl Target {
    /// An external database by URL (`sslmode` and the rest are passed to libpq as given).
    pub fn url(url: &str) -> Self {
        let describe = match <tokio_postgres::Config as std::str::FromStr>::from_str(url) {
            Ok(c) => format!(
                "database {} on {} as {}",
                c.get_dbname().unwrap_or("?"),
                c.get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => h.clone(),
                        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_default(),
                c.get_user().unwrap_or("?")
            ),
            Err(_) => "DATABASE_URL".into(),
        };
        let db_name = <tokio_postgres::Config as std::str::FromStr>::from_str(url)
            .ok()
            .and_then(|c| c.get_dbname().map(str::to_string))
            .unwrap_or_else(|| "onebase".into());
        Target {
            args: vec![format!("--dbname={url}")],
            describe,
            db_name,
        }
    }

    /// A database reached like `config` (the embedded cluster's unix socket).
    pub fn from_config(config: &tokio_postgres::Config) -> anyhow::Result<Self> {
        let mut args = Vec::new();
        match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Unix(path)) => args.push(format!("--host={}", path.display())),
            Some(tokio_postgres::config::Host::Tcp(host)) => args.push(format!("--host={host}")),
            None => {}
        }
        if let Some(port) = config.get_ports().first() {
            args.push(format!("--port={port}"));
        }
        if let Some(user) = config.get_user() {
            args.push(format!("--username={user}"));
        }
        let db = config.get_dbname().context("the database config names no database")?;
        let describe = format!("database {db} ({})", args.join(" "));
        args.push(format!("--dbname={db}"));
        Ok(Target {
            args,
            describe,
            db_name: db.to_string(),
        })
    }
}

impl Target {
    /// The arguments without the database name (for pg_basebackup, which backs up the cluster).
    pub fn server_args(&self) -> Vec<String> {
        let conninfo = |v: &str| v.contains("://") || v.contains('=');
        self.args
            .iter()
            .filter(|a| a.strip_prefix("--dbname=").is_none_or(conninfo))
            .cloned()
            .collect()
    }
}

/// A finished backup.
#[derive(Debug)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub duration: Duration,
}

/// Writes a custom-format dump of `target` to `out` (through a temporary file beside it, so an
/// interrupted backup never leaves a truncated file under the final name).
pub fn dump(bin_dir: &Path, target: &Target, out: &Path) -> anyhow::Result<BackupReport> {
    let started = Instant::now();
    let partial = out.with_extension("partial");
    let output = Command::new(bin_dir.join("pg_dump"))
        .args(&target.args)
        .args(["--format=custom", "--no-password"])
        .arg(format!("--file={}", partial.display()))
        .output()
        .with_context(|| format!("running {}", bin_dir.join("pg_dump").display()))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "pg_dump failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    std::fs::rename(&partial, out).with_context(|| format!("moving the backup to {}", out.display()))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        file: out.to_path_buf(),
        bytes,
        duration: started.elapsed(),
    })
}

/// What a checked backup file holds.
#[derive(Debug)]
pub struct BackupInfo {
    /// The newest migration applied in the backed-up database.
    pub schema_version: i64,
}

/// Checks a backup before anything is written: a custom-format dump from pg_dump, readable to
/// its end (a truncated copy fails here), and of a schema this binary can run.
pub fn check(bin_dir: &Path, file: &Path) -> anyhow::Result<BackupInfo> {
    let mut magic = [0u8; 5];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        if f.read_exact(&mut magic).is_err() || &magic != b"PGDMP" {
            bail!(
                "{} is not an onebase backup: not a pg_dump custom-format archive (a plain SQL dump restores with psql)",
                file.display()
            );
        }
    }
    let restore = bin_dir.join("pg_restore");
    // Reading every entry to /dev/null checks the whole file, data included.
    let output = Command::new(&restore)
        .arg("--file=/dev/null")
        .arg(file)
        .output()
        .with_context(|| format!("running {}", restore.display()))?;
    if !output.status.success() {
        bail!(
            "{} is damaged or truncated; nothing was restored: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let output = Command::new(&restore)
        .args(["--data-only", "--table=refinery_schema_history", "--file=-"])
        .arg(file)
        .output()
        .with_context(|| format!("running {}", restore.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let schema_version = schema_version(&text).with_context(|| {
        format!(
            "{} holds no onebase schema (no migration history): not an onebase backup",
            file.display()
        )
    })?;
    let newest = crate::db::migrations::latest_version().unwrap_or(0);
    if schema_version > newest {
        bail!(
            "{} is from a newer onebase (schema version {schema_version}; this binary runs up to {newest}): restore it with that release or newer",
            file.display()
        );
    }
    Ok(BackupInfo { schema_version })
}

/// The highest version in the COPY data of `refinery_schema_history`, as pg_restore prints it.
fn schema_version(sql: &str) -> Option<i64> {
    let mut in_copy = false;
    let mut newest = None;
    for line in sql.lines() {
        if line.starts_with("COPY ") && line.contains("refinery_schema_history") {
            in_copy = true;
        } else if in_copy && line == "\\." {
            in_copy = false;
        } else if in_copy {
            if let Some(v) = line.split('\t').next().and_then(|v| v.parse::<i64>().ok()) {
                newest = newest.max(Some(v));
            }
        }
    }
    newest
}

/// Refuses a target database that holds anything of its own (tables, views or sequences outside
/// the system schemas).
pub async fn ensure_empty(client: &tokio_postgres::Client, describe: &str) -> anyhow::Result<()> {
    let objects: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p', 'v', 'm', 'S')",
            &[],
        )
        .await
        .context("inspecting the restore target")?
        .try_get(0)?;
    if objects > 0 {
        bail!("the restore target {describe} is not empty ({objects} tables, views or sequences); refusing to overwrite it");
    }
    Ok(())
}

/// Restores a checked backup into the empty database `target`: creates the role the server
/// switches to, then runs pg_restore (objects owned by the restoring user, as the server's own
/// migrations would make them).
pub async fn restore(
    bin_dir: &Path,
    file: &Path,
    target: &Target,
    client: &tokio_postgres::Client,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    client
        .batch_execute(
            "DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onebase_app') THEN CREATE ROLE onebase_app NOLOGIN; END IF;
                EXECUTE format('GRANT onebase_app TO %I', current_user);
             END $$",
        )
        .await
        .context("creating the onebase_app role")?;
    let jobs = num_cpus::get().clamp(1, 4);
    let mut cmd = Command::new(bin_dir.join("pg_restore"));
    cmd.args(&target.args)
        .args(["--no-owner", "--exit-on-error", "--no-password"])
        .arg(format!("--jobs={jobs}"))
        .arg(file);
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .context("pg_restore's thread")?
        .with_context(|| format!("running {}", bin_dir.join("pg_restore").display()))?;
    if !output.status.success() {
        bail!(
            "pg_restore failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(started.elapsed())
}

/// `1.5 GiB`, `312 MiB`, `20 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_version_is_read_from_the_copy_data() {
        let sql = "SET x = 1;\nCOPY public.refinery_schema_history (version, name, applied_on, checksum) FROM stdin;\n\
                   1\textensions\t2026\t1\n6\tconversations\t2026\t2\n3\tcollections\t2026\t3\n\\.\n";
        assert_eq!(schema_version(sql), Some(6));
        assert_eq!(schema_version("SET x = 1;\n"), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
