use anyhow::Context;
use clap::Parser;

use onebase::config::{Cli, Command, Config};
use onebase::{database, pg, startup::Application, telemetry};

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
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let db = database::resolve(config).await?;
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
    let db = database::resolve(config).await?;
    let pool = pg::build_pool(db.config.clone(), 1, config.db_ca_file.as_deref())?;
    let mut client = pool.get().await.context("connecting to PostgreSQL")?;
    if status {
        let applied = pg::migrations::applied(&mut client).await.unwrap_or_default();
        for (version, name) in pg::migrations::embedded_versions() {
            match applied.iter().find(|m| m.version == *version) {
                Some(m) => println!("V{version}__{name}\tapplied {}", m.applied_on.as_deref().unwrap_or("")),
                None => println!("V{version}__{name}\tpending"),
            }
        }
    } else {
        pg::check_vector_available(&client).await?;
        let applied = pg::migrations::run(&mut client).await?;
        println!("applied {} migration(s): {applied:?}", applied.len());
    }
    drop(client);
    drop(db);
    Ok(())
}
