//! End-to-end `/v1/embeddings` throughput with concurrent clients: `cargo bench --bench http_embeddings`.
//!
//! Starts the real server (embedded Postgres in a temporary directory, the configured model),
//! then C clients (default 8) each post requests of B texts (default 1 and 32) from the same
//! 2,000-sentence corpus as scripts/bench_ort.py and the `embed` bench, for a fixed time. The
//! "embedder alone" rows embed the same corpus with `Embedder::embed_blocking` in batches of 32
//! (the ceiling) and of C (the most that C single-text clients can have in one batch); each HTTP
//! row is compared with both (target: >= 0.9x). Each row runs with
//! `encoding_format` float (JSON numbers) and base64 (what OpenAI's SDKs request).
//!
//! The clients share the machine's cores with the server, as a remote client would not, so they
//! do as little as a client can: they read `usage` and skip over the vectors without building
//! them (the body is still received and scanned in full).
//!
//! Environment: ONEBASE_TOOLS_DIR (default ./.onebase), ONEBASE_EMBED_MODEL (default fp32),
//! HTTP_BENCH_SECS (default 15), HTTP_BENCH_CLIENTS (default 8), HTTP_BENCH_BATCHES (1,32),
//! HTTP_BENCH_FORMATS (float,base64).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use onebase::config::Cli;
use onebase::{db, embed::Embedder, startup::Application};

/// The part of the response the clients read; `data` is scanned but not materialized.
#[derive(serde::Deserialize)]
struct Response {
    #[allow(dead_code)]
    data: serde::de::IgnoredAny,
    usage: Usage,
}

#[derive(serde::Deserialize)]
struct Usage {
    total_tokens: usize,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn sentences(tools: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let python = tools.join("venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", "import json, sys; sys.path.insert(0, 'scripts'); from sentences import sentences; json.dump(sentences(2000, seed=1234), sys.stdout)"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .with_context(|| format!("running {} (run scripts/bootstrap)", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "corpus generation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("http_embeddings: skipped (run it with `cargo bench --bench http_embeddings`)");
        return Ok(());
    }
    let secs: f64 = env_or("HTTP_BENCH_SECS", "15").parse()?;
    let clients: usize = env_or("HTTP_BENCH_CLIENTS", "8").parse()?;
    let batches: Vec<usize> = env_or("HTTP_BENCH_BATCHES", "1,32")
        .split(',')
        .map(|b| b.trim().parse())
        .collect::<Result<_, _>>()?;
    let formats: Vec<String> = env_or("HTTP_BENCH_FORMATS", "float,base64")
        .split(',')
        .map(|f| f.trim().to_string())
        .collect();
    let data = tempfile::tempdir()?;
    let mut config = Cli::try_parse_from(["onebase"])?.config;
    config.bind = "127.0.0.1:0".parse()?;
    config.database_url = None;
    config.embedded.data_dir = data.path().join("pg");
    config.embedded.pg_port = 54399;
    if config.tools_dir.is_relative() {
        config.tools_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&config.tools_dir);
    }
    let corpus = Arc::new(sentences(&config.tools_dir)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let embedder = {
            let cfg = onebase::embed::EmbedConfig::from_config(&config);
            tokio::task::spawn_blocking(move || Embedder::load(cfg)).await??
        };
        let info = embedder.info().clone();
        println!(
            "model {} ({}), {} clients, {secs} s per row, {} cores",
            info.name,
            info.precision.as_str(),
            clients,
            num_cpus::get()
        );

        // The embedder alone, in corpus order on a blocking thread: in batches of 32 (the best
        // case) and of `clients` (what single-text requests from `clients` callers can form).
        let mut alone = Vec::new();
        for size in [32, clients] {
            let embedder = embedder.clone();
            let corpus = corpus.clone();
            let run = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize, f64)> {
                let started = Instant::now();
                let (mut texts, mut tokens) = (0, 0);
                for chunk in corpus.chunks(size).cycle() {
                    let out = embedder.embed_blocking(chunk)?;
                    texts += out.len();
                    tokens += out.total_tokens();
                    if started.elapsed().as_secs_f64() > secs {
                        break;
                    }
                }
                Ok((texts, tokens, started.elapsed().as_secs_f64()))
            })
            .await??;
            alone.push((size, run.1 as f64 / run.2));
            if size == clients {
                break;
            }
        }
        println!("{:<28} {:>8} {:>10} {:>10}", "path", "texts", "texts/s", "tokens/s");
        for (size, tokens_per_sec) in &alone {
            println!(
                "{:<28} {:>8} {:>10} {:>10.0}",
                format!("embedder alone (batch {size})"),
                "",
                "",
                tokens_per_sec
            );
        }
        let best = alone[0].1;
        let same_shape = alone.last().map_or(best, |a| a.1);

        let db = db::resolve(&config).await?;
        let app = Application::build_with_embedder(&config, db.config.clone(), Some(embedder)).await?;
        let key = app
            .first_run()
            .map(|f| f.owner_key.clone())
            .context("fresh database has a first run")?;
        let url = format!("http://127.0.0.1:{}/v1/embeddings", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let http = reqwest::Client::new();

        for (batch, format) in batches
            .iter()
            .flat_map(|&b| formats.iter().map(move |f| (b, f.clone())))
        {
            let next = Arc::new(AtomicUsize::new(0));
            let texts = Arc::new(AtomicUsize::new(0));
            let tokens = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            let deadline = started + Duration::from_secs_f64(secs);
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (http, url, key, corpus) = (http.clone(), url.clone(), key.clone(), corpus.clone());
                let format = format.clone();
                let (next, texts, tokens) = (next.clone(), texts.clone(), tokens.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let start = next.fetch_add(batch, Ordering::Relaxed);
                        let input: Vec<&String> = (start..start + batch).map(|i| &corpus[i % corpus.len()]).collect();
                        let res = http
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&serde_json::json!({"input": input, "encoding_format": format}))
                            .send()
                            .await?;
                        anyhow::ensure!(res.status().is_success(), "status {}", res.status());
                        let body: Response = res.json().await?;
                        texts.fetch_add(batch, Ordering::Relaxed);
                        tokens.fetch_add(body.usage.total_tokens, Ordering::Relaxed);
                    }
                    Ok(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let (n, t) = (texts.load(Ordering::Relaxed), tokens.load(Ordering::Relaxed));
            let rate = t as f64 / elapsed;
            // Single-text requests can only be batched `clients` at a time.
            let shape = if batch == 1 { same_shape } else { best };
            println!(
                "{:<28} {:>8} {:>10.1} {:>10.0}   ({:.2}x the embedder alone at batch 32, {:.2}x at its batch)",
                format!("HTTP {format}, {clients} x {batch} texts"),
                n,
                n as f64 / elapsed,
                rate,
                rate / best,
                rate / shape
            );
        }
        handle.stop(true).await;
        drop(db);
        Ok::<_, anyhow::Error>(())
    })
}
