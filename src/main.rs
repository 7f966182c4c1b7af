use anyhow::Context;
use clap::Parser;

use onebase::config::{Cli, Command, Config};
use std::path::PathBuf;

use onebase::{db, ops, startup::Application, telemetry};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    let result = actix_web::rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "onebase failed");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config).await,
        Command::Migrate { status } => migrate(&cli.config, status).await,
        Command::Backup { out, base } => backup(&cli.config, out, base).await,
        Command::Restore { file, base, to_time } => restore(&cli.config, file, base, to_time).await,
    }
}

async fn backup(config: &Config, out: Option<PathBuf>, base: Option<PathBuf>) -> anyhow::Result<()> {
    let db = db::attach(config).await?;
    let target = match &config.database_url {
        Some(url) => ops::backup::Target::url(url),
        None => ops::backup::Target::from_config(&db.config)?,
    };
    let bin = config.pg_bin_dir();
    let report = tokio::task::spawn_blocking(move || match base {
        Some(dir) => ops::pitr::base_backup(&bin, &target, &dir),
        None => {
            let db_name = target.db_name.clone();
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "onebase-{db_name}-{}.dump",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            ops::backup::dump(&bin, &target, &out)
        }
    })
    .await??;
    println!(
        "backed up to {} ({}) in {:.1} s",
        report.file.display(),
        ops::backup::human_bytes(report.bytes),
        report.duration.as_secs_f64()
    );
    drop(db);
    Ok(())
}

async fn restore(
    config: &Config,
    file: Option<PathBuf>,
    base: Option<PathBuf>,
    to_time: Option<String>,
) -> anyhow::Result<()> {
    let bin = config.pg_bin_dir();
    if let Some(base) = base {
        anyhow::ensure!(
            config.database_url.is_none(),
            "--base restores the embedded cluster; unset DATABASE_URL"
        );
        let to_time = to_time.as_deref().map(ops::pitr::parse_time).transpose()?;
        let archive = config
            .embedded
            .wal_archive
            .clone()
            .context("--base needs --wal-archive")?;
        let mut opts = onebase::db::embedded::EmbeddedOptions::from_config(config);
        // The restored cluster does not archive into the same directory until the server
        // starts it with --wal-archive again.
        opts.wal_archive = None;
        let (cluster, took) =
            tokio::task::spawn_blocking(move || ops::pitr::restore_base(opts, &base, &archive, to_time)).await??;
        let client = db::connect_once(&cluster.client_config(&config.embedded.db_name)).await?;
        let version: Option<i64> = client
            .query_one("SELECT max(version)::bigint FROM refinery_schema_history", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(None);
        drop(client);
        drop(cluster);
        println!(
            "recovered {} to {} in {:.1} s (schema version {}); serve it with --data-dir {}",
            config.embedded.data_dir.display(),
            to_time.map_or("the end of the archive".to_string(), |t| t.to_rfc3339()),
            took.as_secs_f64(),
            version.unwrap_or(0),
            config.embedded.data_dir.display()
        );
        return Ok(());
    }
    let file = file.context("name the backup file")?;
    let info = {
        let (bin, file) = (bin.clone(), file.clone());
        tokio::task::spawn_blocking(move || ops::backup::check(&bin, &file)).await??
    };
    let (db, target, created_dir) = match &config.database_url {
        Some(url) => (db::resolve(config).await?, ops::backup::Target::url(url), false),
        None => {
            ops::pitr::ensure_empty_dir(&config.embedded.data_dir)?;
            let db = db::resolve(config).await?;
            let target = ops::backup::Target::from_config(&db.config)?;
            (db, target, true)
        }
    };
    let client = db::connect_once(&db.config).await?;
    ops::backup::ensure_empty(&client, &target.describe).await?;
    match ops::backup::restore(&bin, &file, &target, &client).await {
        Ok(took) => {
            println!(
                "restored {} (schema version {}) into {} in {:.1} s{}",
                file.display(),
                info.schema_version,
                target.describe,
                took.as_secs_f64(),
                if created_dir {
                    format!("; serve it with --data-dir {}", config.embedded.data_dir.display())
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Err(err) => {
            drop(client);
            drop(db);
            if created_dir {
                let _ = std::fs::remove_dir_all(&config.embedded.data_dir);
            }
            Err(err)
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let db = db::resolve(config).await?;
    let app = Application::build(config, db.config.clone()).await?;
    let url = format!("http://{}:{}", config.bind.ip(), app.port());
    if let Some(first) = app.first_run() {
        // Printed once, on the database's first start: only the key's hash is kept.
        println!(
            "\nonebase: first start. Created tenant \"default\" ({}) and its owner API key.\n\
             Store the key now; it is not shown again:\n\n    {}\n\n\
             Try it:\n    curl -H 'Authorization: Bearer {}' {url}/v1/auth/me\n",
            first.tenant_id, first.owner_key, first.owner_key
        );
    }
    tracing::info!(%url, "onebase is serving");
    println!("onebase is serving on {url} (docs: {url}/docs, readiness: {url}/ready)");
    app.run_until_stopped().await.context("HTTP server failed")?;
    tracing::info!("HTTP server stopped; shutting down the database");
    // Dropping the embedded cluster (if any) performs a clean, fast shutdown.
    drop(db);
    Ok(())
}

async fn migrate(config: &Config, status: bool) -> anyhow::Result<()> {
    let db = db::resolve(config).await?;
    let pool = db::build_pool(db.config.clone(), 1, config.db_ca_file.as_deref())?;
    let mut client = pool.get().await.context("connecting to PostgreSQL")?;
    if status {
        let applied = db::migrations::applied(&mut client).await.unwrap_or_default();
        for (version, name) in db::migrations::embedded_versions() {
            match applied.iter().find(|m| m.version == *version) {
                Some(m) => println!("V{version}__{name}\tapplied {}", m.applied_on.as_deref().unwrap_or("")),
                None => println!("V{version}__{name}\tpending"),
            }
        }
    } else {
        db::check_vector_available(&client).await?;
        let applied = db::migrations::run(&mut client).await?;
        println!("applied {} migration(s): {applied:?}", applied.len());
    }
    drop(client);
    drop(db);
    Ok(())
}
