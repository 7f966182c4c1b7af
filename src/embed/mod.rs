//! Text embeddings: a local ONNX sentence-embedding model (all-MiniLM-L6-v2 by default) served by
//! dedicated inference threads that coalesce concurrent requests into batches.
//!
//! The model runs through fastembed on ONNX Runtime, loaded at run time from the shared library
//! that `scripts/bootstrap` installs (no download at build or run time). Inference never runs on
//! the async executor: `Embedder::embed` only queues texts and awaits a reply, so a burst of
//! embedding requests cannot starve the HTTP workers, and when the backlog is full it fails fast
//! with [`EmbedError::Overloaded`] (503 + Retry-After) instead of growing latency without bound.

mod batcher;
mod load;
mod pipeline;
pub mod query_cache;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastembed::{
    EmbeddingModel, InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use ort::environment::Environment;
use serde::Serialize;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;
use utoipa::ToSchema;

pub use crate::metrics::EmbedStatsSnapshot;
use batcher::{Chunk, Queue};
pub use load::EmbedConfig;
use load::*;
use pipeline::{lock, EmbedStats, Pipeline, Worker};

pub use crate::config::{PoolingKind, DEFAULT_MODEL};
use crate::error::ApiError;

/// The files a BERT-style model directory must contain.
const MODEL_FILE: &str = "model.onnx";
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// sentence-transformers trained all-MiniLM-L6-v2 with `max_seq_length` 256 (its
/// sentence_bert_config.json, which the model directory does not carry). Its tokenizer config
/// says 512 because that is the BERT position limit, but tokens past 256 were never seen in
/// training, so 256 is what the reference implementation truncates at.
const MINILM_MAX_LENGTH: usize = 256;
const FALLBACK_MAX_LENGTH: usize = 512;

/// Fixed cost of one model call, in token-equivalents, for splitting a batch by length (see
/// `batcher::plan_groups`). Any small value does: ONNX Runtime's per-call cost is small next to a
/// batch's compute, and what matters is splitting by length at all (docs/benchmarks.md).
const CALL_OVERHEAD_TOKENS: usize = 32;

/// Probe text embedded at load: detects the output dimension and warms up each session (the first
/// run allocates ONNX Runtime's arenas) so the first real request does not pay for it.
const PROBE_TEXT: &str = "onebase embedding probe";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "embedding model file {path} not found: run scripts/bootstrap to install the models, or \
         set ONEBASE_MODEL_DIR to a directory with model.onnx, tokenizer.json, config.json, \
         special_tokens_map.json and tokenizer_config.json"
    )]
    ModelFileMissing { path: PathBuf },

    #[error(
        "ONNX Runtime library {path} not found: run scripts/bootstrap, or set ONEBASE_ORT_DYLIB \
         (or ORT_DYLIB_PATH) to the path of libonnxruntime"
    )]
    OrtDylibMissing { path: PathBuf },

    #[error("failed to initialize ONNX Runtime from {path}: {message}")]
    OrtInit { path: PathBuf, message: String },

    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid embedding configuration: {0}")]
    InvalidConfig(String),

    #[error(
        "`{name}` is a fastembed hub model, but this build cannot download models: build with \
         `cargo build --release --features hub` on a machine that reaches huggingface.co, or put \
         the model's files in a directory and set ONEBASE_MODEL_DIR"
    )]
    HubDisabled { name: String },

    #[error("failed to load the embedding model from {path}: {message}")]
    ModelLoad { path: PathBuf, message: String },

    #[error("tokenization failed: {0}")]
    Tokenize(String),

    #[error("embedding inference failed: {0}")]
    Inference(String),

    #[error("too many inputs in one request: {count}, at most {max}")]
    TooManyInputs { count: usize, max: usize },

    #[error("the embedding queue is full, retry in {retry_after_secs} s")]
    Overloaded { retry_after_secs: u64 },

    #[error("the embedder is shutting down")]
    ShuttingDown,
}

/// How an embedding failure reaches a client: a full queue or a stopping server is a 503 to
/// retry, too many inputs a 413; anything else is the server's fault. Every plane that embeds
/// (and `AppState::embed_query`) relies on this conversion, so it lives beside the error.
impl From<EmbedError> for ApiError {
    fn from(err: EmbedError) -> Self {
        match err {
            EmbedError::Overloaded { retry_after_secs } => ApiError::Overloaded {
                message: "the embedding queue is full; retry later".into(),
                retry_after_secs: u32::try_from(retry_after_secs).unwrap_or(u32::MAX),
            },
            EmbedError::TooManyInputs { count, max } => ApiError::TooManyInputs { count, max },
            // The server is stopping; another instance (or this one after restart) can serve it.
            EmbedError::ShuttingDown => ApiError::Overloaded {
                message: "the server is shutting down; retry later".into(),
                retry_after_secs: 1,
            },
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// What is loaded, for `/v1/models`-style endpoints and logs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfo {
    /// Configured model name.
    #[schema(example = "all-MiniLM-L6-v2")]
    pub name: String,
    /// Length of every embedding vector.
    #[schema(example = 384)]
    pub dims: usize,
    pub precision: Precision,
    pub pooling: PoolingKind,
    /// Inputs are truncated to this many tokens (special tokens included).
    #[schema(example = 256)]
    pub max_length: usize,
    pub source: ModelSource,
    /// Directory the model was loaded from (for `hub`, the download cache).
    pub model_dir: String,
}

/// Where the model was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// A local directory (installed by scripts/bootstrap, or ONEBASE_MODEL_DIR).
    Directory,
    /// fastembed's Hugging Face hub download (builds with the `hub` feature).
    Hub,
}

/// Embeddings of a list of texts, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    /// L2-normalized pooled vectors (see [`PoolingKind`]).
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model saw per text: special tokens included, after truncation.
    pub token_counts: Vec<usize>,
    /// Whether a text was longer than `max_length` tokens and cut.
    pub truncated: Vec<bool>,
}

impl Embedded {
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    pub fn total_tokens(&self) -> usize {
        self.token_counts.iter().sum()
    }

    fn with_capacity(n: usize) -> Self {
        Self {
            vectors: Vec::with_capacity(n),
            token_counts: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
        }
    }

    fn append(&mut self, other: Embedded) {
        self.vectors.extend(other.vectors);
        self.token_counts.extend(other.token_counts);
        self.truncated.extend(other.truncated);
    }
}

/// Handle to the loaded model and its inference threads. Cheap to clone; the threads stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

struct Inner {
    info: ModelInfo,
    queue: Arc<Queue>,
    /// One model (session + tokenizer) per worker. Workers lock their own for each batch, which
    /// is uncontended except when `embed_blocking` borrows one.
    models: Vec<Arc<Mutex<TextEmbedding>>>,
    pipeline: Arc<Pipeline>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queue.shutdown();
    }
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.inner.info)
            .field("workers", &self.inner.models.len())
            .finish()
    }
}

impl Embedder {
    /// Load the model and start the inference threads.
    ///
    /// Blocking (reads ~90 MB and builds ONNX Runtime sessions, about a second): call it before
    /// starting the async runtime or from `spawn_blocking`.
    pub fn load(cfg: EmbedConfig) -> Result<Embedder, EmbedError> {
        cfg.validate()?;
        let source = cfg.source()?;
        let started = Instant::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let intra_threads = (cores / cfg.threads).max(1);
        let loaded = match &source {
            Source::Dir(dir) => load_dir(&cfg, dir, intra_threads)?,
            Source::Hub(model) => load_hub(&cfg, model, intra_threads)?,
        };
        let Loaded {
            sessions,
            precision,
            pooling,
            max_length,
            batch_invariant,
            location,
        } = loaded;
        let load_error = |message: String| EmbedError::ModelLoad {
            path: PathBuf::from(&location),
            message,
        };

        let mut models = Vec::with_capacity(sessions.len());
        let mut dims = 0;
        for mut te in sessions {
            let probe = te.embed([PROBE_TEXT], None).map_err(|e| load_error(e.to_string()))?;
            dims = probe.first().map_or(0, Vec::len);
            if dims == 0 {
                return Err(load_error(
                    "the model returned an empty embedding for a probe text".into(),
                ));
            }
            models.push(Arc::new(Mutex::new(te)));
        }
        let Some(first) = models.first() else {
            return Err(EmbedError::InvalidConfig("threads must be at least 1".into()));
        };

        let counter = {
            let mut tok = lock(first).tokenizer.clone();
            tok.with_truncation(None)
                .map_err(|e| load_error(format!("tokenizer: {e}")))?
                .with_padding(None);
            tok
        };
        let pipeline = Arc::new(Pipeline {
            counter,
            max_length,
            batch_invariant,
            stats: Arc::new(EmbedStats::default()),
        });

        let queue = Arc::new(Queue::new(cfg.queue_capacity, cfg.max_batch, cfg.max_wait, cfg.threads));
        for (i, model) in models.iter().enumerate() {
            let worker = Worker {
                queue: queue.clone(),
                model: model.clone(),
                pipeline: pipeline.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("onebase-embed-{i}"))
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                // Release the threads already started; they would otherwise wait forever.
                queue.shutdown();
                return Err(load_error(format!("cannot start an inference thread: {e}")));
            }
        }

        let info = ModelInfo {
            name: cfg.model_name.clone(),
            dims,
            precision,
            pooling,
            max_length,
            source: source.kind(),
            model_dir: location,
        };
        tracing::info!(
            model = %info.name,
            dims,
            precision = precision.as_str(),
            pooling = ?pooling,
            max_length,
            source = ?info.source,
            model_dir = %info.model_dir,
            workers = cfg.threads,
            intra_threads,
            batch_invariant = pipeline.batch_invariant,
            max_batch = cfg.max_batch,
            queue_capacity = cfg.queue_capacity,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(Embedder {
            inner: Arc::new(Inner {
                info,
                queue,
                models,
                pipeline,
            }),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Most texts one `embed` call may carry (the queue capacity).
    pub fn max_inputs(&self) -> usize {
        self.inner.queue.capacity()
    }

    /// Counters and queue depth, for `/metrics`.
    pub fn stats(&self) -> EmbedStatsSnapshot {
        let s = &self.inner.pipeline.stats;
        EmbedStatsSnapshot {
            texts: s.texts.load(Ordering::Relaxed),
            tokens: s.tokens.load(Ordering::Relaxed),
            model_calls: s.model_calls.load(Ordering::Relaxed),
            busy_seconds: s.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
            queued_texts: self.inner.queue.queued_texts() as u64,
            queue_capacity: self.inner.queue.capacity() as u64,
        }
    }

    /// Embed texts through the shared batching queue; results are in input order.
    ///
    /// Fails fast with `Overloaded` when the queue cannot take all of `texts` right now, and with
    /// `TooManyInputs` when `texts` alone exceeds the queue capacity. Dropping the future before
    /// it completes withdraws the texts that no worker has started on yet.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embedded, EmbedError> {
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let queue = &self.inner.queue;
        let count = texts.len();
        if count > queue.capacity() {
            return Err(EmbedError::TooManyInputs {
                count,
                max: queue.capacity(),
            });
        }
        let now = Instant::now();
        let mut chunks = Vec::with_capacity(count.div_ceil(queue.max_batch()));
        let mut replies = Vec::with_capacity(chunks.capacity());
        let mut rest = texts.into_iter();
        loop {
            let texts: Vec<String> = rest.by_ref().take(queue.max_batch()).collect();
            if texts.is_empty() {
                break;
            }
            let (reply, rx) = oneshot::channel();
            chunks.push(Chunk {
                texts,
                enqueued: now,
                reply,
            });
            replies.push(rx);
        }
        queue.submit(chunks)?;
        let mut out = Embedded::with_capacity(count);
        for rx in replies {
            // A dropped sender means the queue was shut down with this chunk still in it.
            out.append(rx.await.map_err(|_| EmbedError::ShuttingDown)??);
        }
        Ok(out)
    }

    /// Embed `texts` as one batch on the calling thread, bypassing the queue (same computation
    /// and results as `embed`, without its coalescing, limits or overload protection).
    ///
    /// For benchmarks and batch jobs that do their own batching. Blocks for the whole inference,
    /// so never call it on an async executor thread.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        // Prefer a model no worker is using right now; otherwise queue behind worker 0's batch.
        let mut model = self
            .inner
            .models
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| lock(&self.inner.models[0]));
        self.inner.pipeline.run(&mut model, &refs)
    }

    /// Token count of each text as the model would see it without truncation (special tokens
    /// included), e.g. to chunk documents to fit `info().max_length`. CPU work proportional to
    /// the text length: call it off the async executor for large inputs.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        self.inner.pipeline.full_token_counts(texts)
    }

    /// The model's tokenizer without truncation or padding (e.g. to chunk documents by tokens).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.pipeline.counter
    }
}

#[cfg(test)]
mod tests;
