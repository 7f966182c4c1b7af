//! Text embeddings: a local ONNX sentence-embedding model (all-MiniLM-L6-v2 by default) served by
//! dedicated inference threads that coalesce concurrent requests into batches.
//!
//! The model runs through fastembed on ONNX Runtime, loaded at run time from the shared library
//! that `scripts/bootstrap` installs (no download at build or run time). Inference never runs on
//! the async executor: `Embedder::embed` only queues texts and awaits a reply, so a burst of
//! embedding requests cannot starve the HTTP workers, and when the backlog is full it fails fast
//! with [`EmbedError::Overloaded`] (503 + Retry-After) instead of growing latency without bound.

mod batcher;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fastembed::{
    EmbeddingModel, InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use ort::environment::Environment;
use serde::Serialize;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use batcher::{Chunk, Queue};

/// Model installed by `scripts/bootstrap` and used when nothing else is configured.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

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
/// `batcher::plan_groups`). On the mixed-length benchmark corpus (2 cores, batches of 32) any
/// value from 0 to 128 ran 2.5-3x faster than not splitting, with differences between them
/// within run-to-run noise; ONNX Runtime's per-call cost is small next to a batch's compute.
const CALL_OVERHEAD_TOKENS: usize = 32;

/// Probe text embedded at load: detects the output dimension and warms up each session (the first
/// run allocates ONNX Runtime's arenas) so the first real request does not pay for it.
const PROBE_TEXT: &str = "onebase embedding probe";

#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// Model name, e.g. "all-MiniLM-L6-v2" or "all-MiniLM-L6-v2-int8"; also the directory name
    /// under `models_root` unless `model_dir` is set.
    pub model_name: String,
    /// Explicit model directory (ONEBASE_MODEL_DIR): any BERT-style model with model.onnx and the
    /// four tokenizer files. Overrides `models_root/model_name`.
    pub model_dir: Option<PathBuf>,
    /// `<tools>/models`.
    pub models_root: PathBuf,
    /// ONNX Runtime shared library, default `<tools>/lib/libonnxruntime.so`.
    pub ort_dylib: PathBuf,
    /// Most texts per model call.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more texts after its first one was queued.
    pub max_wait: Duration,
    /// Most texts waiting for a worker; beyond it `embed` fails with `Overloaded`. Also the
    /// largest number of texts a single `embed` call may carry.
    pub queue_capacity: usize,
    /// Inference worker threads, each with its own session. ONNX Runtime's intra-op threads per
    /// session are `cores / threads`, so the total stays at one thread per core.
    pub threads: usize,
    /// How token vectors become one text vector. `None` = the model directory's
    /// `1_Pooling/config.json` (sentence-transformers layout) if present, else mean pooling.
    pub pooling: Option<PoolingKind>,
    /// Download cache for fastembed model names (cargo feature `hub`), default `<tools>/hub`.
    pub hub_cache: PathBuf,
}

/// Pooling of the model's token vectors into one text vector (then L2-normalized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolingKind {
    /// Average of the real (non-padding) tokens: all-MiniLM-L6-v2 and most sentence-transformers.
    Mean,
    /// The first ([CLS]) token: bge, gte, mxbai and other CLS-trained models.
    Cls,
}

impl PoolingKind {
    fn to_fastembed(self) -> Pooling {
        match self {
            PoolingKind::Mean => Pooling::Mean,
            PoolingKind::Cls => Pooling::Cls,
        }
    }
}

impl EmbedConfig {
    /// Defaults for a tools directory laid out by `scripts/bootstrap`.
    pub fn new(tools_dir: impl AsRef<Path>) -> Self {
        let tools_dir = tools_dir.as_ref();
        Self {
            model_name: DEFAULT_MODEL.to_string(),
            model_dir: None,
            models_root: tools_dir.join("models"),
            ort_dylib: tools_dir.join("lib").join(ort_dylib_file_name()),
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            queue_capacity: 1024,
            threads: 1,
            pooling: None,
            hub_cache: tools_dir.join("hub"),
        }
    }

    /// The model directory `load` will use.
    pub fn resolved_model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| self.models_root.join(&self.model_name))
    }

    /// Where `load` takes the model from: an explicit directory, the model's directory under
    /// `models_root`, or (for a fastembed model name with no such directory) the hub.
    fn source(&self) -> Result<Source, EmbedError> {
        if let Some(dir) = &self.model_dir {
            return Ok(Source::Dir(dir.clone()));
        }
        let name = self.model_name.as_str();
        let plain = !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.');
        let hub = hub_model(name);
        if plain {
            let dir = self.resolved_model_dir();
            if dir.exists() || hub.is_none() {
                return Ok(Source::Dir(dir));
            }
        }
        match hub {
            Some(model) => Ok(Source::Hub(model)),
            None => Err(EmbedError::InvalidConfig(format!(
                "model name `{name}` is neither a plain directory name under {} nor a fastembed model name",
                self.models_root.display()
            ))),
        }
    }

    fn validate(&self) -> Result<(), EmbedError> {
        let invalid = |msg: String| Err(EmbedError::InvalidConfig(msg));
        if self.max_batch == 0 {
            return invalid("max_batch must be at least 1".into());
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1".into());
        }
        if self.threads == 0 {
            return invalid("threads must be at least 1".into());
        }
        Ok(())
    }
}

/// Where the model comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A directory with model.onnx and the tokenizer files (what `scripts/bootstrap` installs).
    Dir(PathBuf),
    /// A model of fastembed's catalogue, fetched from the Hugging Face hub (cargo feature `hub`).
    Hub(EmbeddingModel),
}

impl Source {
    fn kind(&self) -> ModelSource {
        match self {
            Source::Dir(_) => ModelSource::Directory,
            Source::Hub(_) => ModelSource::Hub,
        }
    }
}

/// A fastembed catalogue model named by its variant (`BGESmallENV15`, case-insensitive) or by its
/// hub repository (`Xenova/bge-small-en-v1.5`).
fn hub_model(name: &str) -> Option<EmbeddingModel> {
    if let Ok(model) = name.parse::<EmbeddingModel>() {
        return Some(model);
    }
    TextEmbedding::list_supported_models()
        .into_iter()
        .find(|m| m.model_code.eq_ignore_ascii_case(name))
        .map(|m| m.model)
}

/// Sessions and traits of a model, whichever source it came from.
struct Loaded {
    sessions: Vec<TextEmbedding>,
    precision: Precision,
    pooling: PoolingKind,
    max_length: usize,
    batch_invariant: bool,
    /// The directory (or hub cache) it was loaded from, for errors and `/ready`.
    location: String,
}

fn load_dir(cfg: &EmbedConfig, model_dir: &Path, intra_threads: usize) -> Result<Loaded, EmbedError> {
    let model_path = model_dir.join(MODEL_FILE);
    for file in std::iter::once(MODEL_FILE).chain(TOKENIZER_FILES) {
        let path = model_dir.join(file);
        if !path.is_file() {
            return Err(EmbedError::ModelFileMissing { path });
        }
    }
    let environment = ort_environment(&cfg.ort_dylib)?;
    let read = |file: &str| {
        let path = model_dir.join(file);
        std::fs::read(&path).map_err(|source| EmbedError::Io { path, source })
    };
    let tokenizer_config = read("tokenizer_config.json")?;
    let identity = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| cfg.model_name.clone());
    let max_length = max_length_for(&identity, model_dir, &tokenizer_config);
    let pooling = match cfg.pooling {
        Some(p) => p,
        None => pooling_from_dir(model_dir)?.unwrap_or(PoolingKind::Mean),
    };
    let onnx = read(MODEL_FILE)?;
    let graph = GraphTraits::scan(&onnx);
    let precision = if graph.quantized || identity.to_ascii_lowercase().contains("int8") {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    let model = UserDefinedEmbeddingModel::new(
        onnx,
        TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: tokenizer_config,
        },
    )
    // Quantization stays at its default (None): fastembed only uses it to refuse splitting a call
    // into several batches for dynamically quantized models, and every call made here is already
    // exactly one batch.
    .with_pooling(pooling.to_fastembed());
    let sessions = (0..cfg.threads)
        .map(|_| {
            let options = InitOptionsUserDefined::new()
                .with_environment(environment.clone())
                .with_max_length(max_length)
                .with_intra_threads(intra_threads);
            TextEmbedding::try_new_from_user_defined(model.clone(), options).map_err(|e| EmbedError::ModelLoad {
                path: model_path.clone(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        sessions,
        precision,
        pooling,
        max_length,
        batch_invariant: !graph.dynamic_quantization,
        location: model_dir.display().to_string(),
    })
}

/// The pooling a sentence-transformers model directory declares in `1_Pooling/config.json`.
fn pooling_from_dir(model_dir: &Path) -> Result<Option<PoolingKind>, EmbedError> {
    let path = model_dir.join("1_Pooling").join("config.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EmbedError::Io { path, source }),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| EmbedError::ModelLoad {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if v["pooling_mode_cls_token"] == true {
        Ok(Some(PoolingKind::Cls))
    } else if v["pooling_mode_mean_tokens"] == true {
        Ok(Some(PoolingKind::Mean))
    } else {
        Err(EmbedError::InvalidConfig(format!(
            "{} asks for a pooling mode other than mean or cls, which is not supported; set \
             ONEBASE_EMBED_POOLING to override",
            path.display()
        )))
    }
}

#[cfg(feature = "hub")]
fn load_hub(cfg: &EmbedConfig, model: &EmbeddingModel, intra_threads: usize) -> Result<Loaded, EmbedError> {
    use fastembed::{QuantizationMode, TextInitOptions};

    let environment = ort_environment(&cfg.ort_dylib)?;
    let load_error = |message: String| EmbedError::ModelLoad {
        path: cfg.hub_cache.clone(),
        message: format!("{model:?}: {message}"),
    };
    let pooling = match TextEmbedding::get_default_pooling_method(model) {
        Some(Pooling::Cls) => PoolingKind::Cls,
        _ => PoolingKind::Mean,
    };
    if cfg.pooling.is_some_and(|p| p != pooling) {
        return Err(EmbedError::InvalidConfig(format!(
            "{model:?} uses {pooling:?} pooling, which fastembed applies itself; unset ONEBASE_EMBED_POOLING"
        )));
    }
    let quantization = TextEmbedding::get_quantization_mode(model);
    let max_length = if format!("{model:?}").starts_with("AllMiniLM") {
        MINILM_MAX_LENGTH
    } else {
        FALLBACK_MAX_LENGTH
    };
    // The first session downloads into the cache; the others find the files there.
    let sessions = (0..cfg.threads)
        .map(|_| {
            let options = TextInitOptions::new(model.clone())
                .with_cache_dir(cfg.hub_cache.clone())
                .with_environment(environment.clone())
                .with_max_length(max_length)
                .with_intra_threads(intra_threads)
                .with_show_download_progress(false);
            TextEmbedding::try_new(options).map_err(|e| load_error(error_chain(&e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        sessions,
        precision: if quantization == QuantizationMode::None {
            Precision::Fp32
        } else {
            Precision::Int8
        },
        pooling,
        max_length,
        batch_invariant: quantization != QuantizationMode::Dynamic,
        location: cfg.hub_cache.display().to_string(),
    })
}

/// An error with its causes, `outer: inner: ...` (fastembed's download errors keep the network
/// failure in their source).
#[cfg(feature = "hub")]
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some wrappers already repeat their cause in their own message.
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

#[cfg(not(feature = "hub"))]
fn load_hub(_: &EmbedConfig, model: &EmbeddingModel, _: usize) -> Result<Loaded, EmbedError> {
    Err(EmbedError::HubDisabled {
        name: format!("{model:?}"),
    })
}

fn ort_dylib_file_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic during inference leaves the model usable (ONNX Runtime sessions hold no Rust-side
    // invariants), so recover from poisoning rather than disable embeddings for good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Worker {
    queue: Arc<Queue>,
    model: Arc<Mutex<TextEmbedding>>,
    pipeline: Arc<Pipeline>,
}

impl Worker {
    fn run(self) {
        while let Some(batch) = self.queue.next_batch() {
            let started = Instant::now();
            let refs: Vec<&str> = batch.iter().flat_map(|c| c.texts.iter().map(String::as_str)).collect();
            // A panic inside tokenizers or ONNX Runtime must not kill the thread: the queue
            // would keep accepting work that nobody runs.
            let result = catch_unwind(AssertUnwindSafe(|| self.pipeline.run(&mut lock(&self.model), &refs)))
                .unwrap_or_else(|panic| {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic in inference".into());
                    Err(EmbedError::Inference(msg))
                });
            let n = refs.len();
            drop(refs);
            self.queue.record(n, started.elapsed());
            tracing::trace!(
                texts = n,
                chunks = batch.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "embedding batch"
            );
            reply(batch, result);
        }
    }
}

/// Hand each chunk its slice of the batch result.
fn reply(batch: Vec<Chunk>, result: Result<Embedded, EmbedError>) {
    match result {
        Ok(mut all) => {
            // Split from the back so each `split_off` moves only the chunk's own elements.
            let mut parts = Vec::with_capacity(batch.len());
            for chunk in batch.iter().rev() {
                let at = all.vectors.len() - chunk.texts.len();
                parts.push(Embedded {
                    vectors: all.vectors.split_off(at),
                    token_counts: all.token_counts.split_off(at),
                    truncated: all.truncated.split_off(at),
                });
            }
            for (chunk, part) in batch.into_iter().zip(parts.into_iter().rev()) {
                // The caller may have gone away meanwhile; nothing to do then.
                let _ = chunk.reply.send(Ok(part));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for chunk in batch {
                let _ = chunk.reply.send(Err(EmbedError::Inference(msg.clone())));
            }
        }
    }
}

fn run_model(model: &mut TextEmbedding, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let vectors = model
        .embed(texts, Some(texts.len()))
        .map_err(|e| EmbedError::Inference(e.to_string()))?;
    if vectors.len() != texts.len() {
        return Err(EmbedError::Inference(format!(
            "the model returned {} embeddings for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    Ok(vectors)
}

/// Tokenization and model calls for one batch, shared by the workers and `embed_blocking` so
/// both paths give identical results.
struct Pipeline {
    /// The model's tokenizer without truncation or padding, to count tokens.
    counter: Tokenizer,
    max_length: usize,
    /// Whether a text's vector is independent of the other texts in its model call. False for
    /// dynamically quantized models: their activation scales are computed over the whole call
    /// (every text and the padding), so batching would make a text's vector depend on unrelated
    /// requests that happened to be coalesced with it (cosine down to ~0.98 measured on
    /// all-MiniLM-L6-v2-int8). Such models get one call per text, which on CPU costs little
    /// because it also removes all padding.
    batch_invariant: bool,
    stats: Arc<EmbedStats>,
}

/// Cumulative work of the model, for `/metrics`.
#[derive(Debug, Default)]
struct EmbedStats {
    texts: AtomicU64,
    tokens: AtomicU64,
    model_calls: AtomicU64,
    busy_micros: AtomicU64,
}

/// A reading of the embedder's counters and queue.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmbedStatsSnapshot {
    /// Texts embedded since start.
    pub texts: u64,
    /// Tokens the model saw since start (after truncation, special tokens included).
    pub tokens: u64,
    /// ONNX Runtime calls (a batch is split into calls of similar length).
    pub model_calls: u64,
    /// Time spent tokenizing and in inference.
    pub busy_seconds: f64,
    /// Texts waiting for an inference thread right now.
    pub queued_texts: u64,
    /// Most texts that may wait; beyond it requests get 503.
    pub queue_capacity: u64,
}

impl Pipeline {
    fn run(&self, model: &mut TextEmbedding, texts: &[&str]) -> Result<Embedded, EmbedError> {
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let started = Instant::now();
        let full = self.full_token_counts(texts)?;
        // Truncation keeps the first `max_length` tokens, special tokens included.
        let truncated = full.iter().map(|&n| n > self.max_length).collect();
        let token_counts: Vec<usize> = full.into_iter().map(|n| n.min(self.max_length)).collect();
        let groups = if self.batch_invariant {
            batcher::plan_groups(&token_counts, CALL_OVERHEAD_TOKENS)
        } else {
            (0..texts.len()).map(|i| vec![i]).collect()
        };
        let mut vectors = vec![Vec::new(); texts.len()];
        let calls = groups.len();
        for group in groups {
            let group_texts: Vec<&str> = group.iter().map(|&i| texts[i]).collect();
            let out = run_model(model, &group_texts)?;
            for (i, v) in group.into_iter().zip(out) {
                vectors[i] = v;
            }
        }
        let stats = &self.stats;
        stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        stats
            .tokens
            .fetch_add(token_counts.iter().sum::<usize>() as u64, Ordering::Relaxed);
        stats.model_calls.fetch_add(calls as u64, Ordering::Relaxed);
        stats
            .busy_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Embedded {
            vectors,
            token_counts,
            truncated,
        })
    }

    fn full_token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        texts
            .iter()
            .map(|t| {
                // fastembed's inference API takes strings only and tokenizes them again; the
                // count pass is ~0.5% of inference time (see the bench), and `encode_fast` skips
                // the offset tracking the counts do not need.
                self.counter
                    .encode_fast(*t, true)
                    .map(|enc| enc.len())
                    .map_err(|e| EmbedError::Tokenize(e.to_string()))
            })
            .collect()
    }
}

/// What the ONNX graph tells about the model, from its operator names: ONNX stores each node's
/// `op_type` as a plain string, so a byte search finds them without parsing the protobuf.
struct GraphTraits {
    quantized: bool,
    dynamic_quantization: bool,
}

impl GraphTraits {
    fn scan(onnx: &[u8]) -> Self {
        let has = |op: &str| memchr::memmem::find(onnx, op.as_bytes()).is_some();
        let dynamic_quantization = has("DynamicQuantizeLinear");
        Self {
            quantized: dynamic_quantization || has("MatMulInteger") || has("QLinearMatMul") || has("QuantizeLinear"),
            dynamic_quantization,
        }
    }
}

fn max_length_for(identity: &str, model_dir: &Path, tokenizer_config: &[u8]) -> usize {
    // A sentence-transformers export may ship its training length; it is authoritative.
    let sbert = std::fs::read(model_dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["max_seq_length"].as_u64())
        .filter(|&n| n > 0 && n <= 8192);
    if let Some(n) = sbert {
        return n as usize;
    }
    if identity.starts_with(DEFAULT_MODEL) {
        return MINILM_MAX_LENGTH;
    }
    // Tokenizer configs without a real limit say 1e30; anything implausible means "unknown".
    serde_json::from_slice::<serde_json::Value>(tokenizer_config)
        .ok()
        .and_then(|v| v["model_max_length"].as_f64())
        .filter(|n| (1.0..=1_000_000.0).contains(n))
        .map_or(FALLBACK_MAX_LENGTH, |n| (n as usize).min(FALLBACK_MAX_LENGTH))
}

/// The process-wide ONNX Runtime environment.
///
/// ONNX Runtime allows one environment per process and `ort` can load its library only once, but
/// an embedder may be loaded several times in a process (tests build many apps). The first
/// successful initialization wins and is reused; a failed one is retried on the next call.
fn ort_environment(dylib: &Path) -> Result<Environment, EmbedError> {
    static ENV: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);
    let mut env = lock(&ENV);
    if let Some((loaded, environment)) = env.as_ref() {
        if loaded != dylib {
            tracing::warn!(
                loaded = %loaded.display(),
                requested = %dylib.display(),
                "ONNX Runtime is already loaded in this process; ignoring the new library path"
            );
        }
        return Ok(environment.clone());
    }
    if !dylib.is_file() {
        return Err(EmbedError::OrtDylibMissing {
            path: dylib.to_path_buf(),
        });
    }
    let init_error = |message: String| EmbedError::OrtInit {
        path: dylib.to_path_buf(),
        message,
    };
    let environment = ort::init_from(dylib)
        .map_err(|e| init_error(e.to_string()))?
        .with_name("onebase")
        .with_telemetry(false)
        .build()
        .map_err(|e| init_error(e.to_string()))?;
    *env = Some((dylib.to_path_buf(), environment.clone()));
    Ok(environment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Tools dir as the server would find it; bootstrap always installs the fp32 model, so a
    /// missing model is a test failure, not a skip.
    fn test_config() -> EmbedConfig {
        let tools = std::env::var_os("ONEBASE_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".onebase"));
        EmbedConfig::new(tools)
    }

    fn shared() -> &'static Embedder {
        static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
        EMBEDDER.get_or_init(|| Embedder::load(test_config()).expect("load the fp32 model"))
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const ACCEPT_TEXTS: [&str; 4] = [
        "Hello, World!",
        "This is an example passage.",
        "fastembed-rs is licensed under Apache-2.0",
        "Some other short text here blah blah blah",
    ];
    /// fastembed-rs' reference values for all-MiniLM-L6-v2: component sums of each embedding.
    const ACCEPT_SUMS: [f32; 4] = [0.59605527, 0.36542925, -0.16450031, -0.40903988];

    fn assert_acceptance(e: &Embedded) {
        for (i, (v, want)) in e.vectors.iter().zip(ACCEPT_SUMS).enumerate() {
            let sum: f32 = v.iter().sum();
            assert!(
                (sum - want).abs() < 1e-3,
                "text {i}: component sum {sum}, expected {want}"
            );
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "text {i} not normalized: {norm}");
        }
    }

    #[tokio::test]
    async fn fp32_matches_reference_sums() {
        let e = shared();
        let info = e.info();
        assert_eq!(info.dims, 384);
        assert_eq!(info.precision, Precision::Fp32);
        assert_eq!(info.max_length, 256);
        let texts = strings(&ACCEPT_TEXTS);
        let queued = e.embed(texts.clone()).await.unwrap();
        assert_acceptance(&queued);
        assert_acceptance(&e.embed_blocking(&texts).unwrap());
        // [CLS] hello , world ! [SEP]
        assert_eq!(queued.token_counts[0], 6);
        assert_eq!(queued.truncated, [false; 4]);
    }

    #[tokio::test]
    async fn concurrent_callers_get_their_own_vectors() {
        let e = shared();
        let texts: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    "request {i} talks about topic number {} {}",
                    i * 7,
                    "word ".repeat(i % 9)
                )
            })
            .collect();
        let tasks: Vec<_> = texts
            .iter()
            .cloned()
            .map(|t| {
                let e = e.clone();
                tokio::spawn(async move { e.embed(vec![t]).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap().unwrap();
            let direct = e.embed_blocking(&texts[i..=i]).unwrap();
            let c = cosine(&got.vectors[0], &direct.vectors[0]);
            assert!(c > 0.9999, "text {i}: cosine {c}");
            assert_eq!(got.token_counts, direct.token_counts);
        }
    }

    #[tokio::test]
    async fn large_request_is_split_but_keeps_order() {
        let e = shared();
        // Mixed lengths so the batch is also regrouped by length internally.
        let texts: Vec<String> = (0..75)
            .map(|i| format!("item {i} {}", "lorem ipsum ".repeat((i * 13) % 40)))
            .collect();
        let got = e.embed(texts.clone()).await.unwrap();
        assert_eq!(got.len(), 75);
        for (i, t) in texts.iter().enumerate() {
            let direct = e.embed_blocking(std::slice::from_ref(t)).unwrap();
            let c = cosine(&got.vectors[i], &direct.vectors[0]);
            assert!(c > 0.9999, "text {i}: cosine {c}");
            assert_eq!(got.token_counts[i], direct.token_counts[0], "text {i}");
        }
    }

    #[tokio::test]
    async fn long_input_is_truncated_and_flagged() {
        let e = shared();
        let long = "word ".repeat(2000);
        let got = e.embed(vec![long.clone(), "short".to_string()]).await.unwrap();
        assert_eq!(got.truncated, [true, false]);
        assert_eq!(got.token_counts[0], 256);
        assert_eq!(got.token_counts[1], 3);
        assert_eq!(e.count_tokens(&[&long]).unwrap(), [2002]);
        assert_eq!(got.vectors[0].len(), 384);
    }

    #[tokio::test]
    async fn empty_and_oversized_requests() {
        let e = shared();
        assert!(e.embed(Vec::new()).await.unwrap().is_empty());
        let too_many = vec!["x".to_string(); e.max_inputs() + 1];
        assert!(matches!(e.embed(too_many).await, Err(EmbedError::TooManyInputs { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overload_fails_fast_and_nothing_hangs() {
        let cfg = EmbedConfig {
            queue_capacity: 4,
            max_batch: 2,
            ..test_config()
        };
        let e = Embedder::load(cfg).unwrap();
        let passage = "a fairly long passage about databases and embeddings ".repeat(20);
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let e = e.clone();
                let text = format!("{i} {passage}");
                tokio::spawn(async move { e.embed(vec![text.clone(), text]).await })
            })
            .collect();
        let (mut ok, mut overloaded) = (0, 0);
        for task in tasks {
            let result = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("an embed call hung")
                .unwrap();
            match result {
                Ok(r) => {
                    assert_eq!(r.len(), 2);
                    ok += 1;
                }
                Err(EmbedError::Overloaded { retry_after_secs }) => {
                    assert!((1..=60).contains(&retry_after_secs));
                    overloaded += 1;
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert!(ok > 0, "nothing succeeded");
        assert!(overloaded > 0, "nothing was rejected");
        assert_eq!(e.stats().queued_texts, 0);
    }

    #[tokio::test]
    async fn int8_vectors_do_not_depend_on_batch_mates() {
        let mut cfg = test_config();
        cfg.model_name = "all-MiniLM-L6-v2-int8".into();
        if !cfg.resolved_model_dir().join(MODEL_FILE).is_file() {
            eprintln!("skipped: no int8 model at {}", cfg.resolved_model_dir().display());
            return;
        }
        let e = Embedder::load(cfg).unwrap();
        assert_eq!(e.info().precision, Precision::Int8);
        let mut texts = strings(&ACCEPT_TEXTS);
        texts.push("a much longer text about embeddings and databases ".repeat(12));
        let batched = e.embed(texts.clone()).await.unwrap();
        for (i, text) in texts.iter().enumerate() {
            let single = e.embed_blocking(std::slice::from_ref(text)).unwrap();
            let c = cosine(&batched.vectors[i], &single.vectors[0]);
            assert!(c > 0.99999, "text {i}: cosine {c}");
        }
        // Quantization error is small next to the fp32 reference.
        let fp32 = shared().embed_blocking(&texts).unwrap();
        for i in 0..texts.len() {
            let c = cosine(&batched.vectors[i], &fp32.vectors[i]);
            assert!(c > 0.95, "text {i}: int8 vs fp32 cosine {c}");
        }
    }

    #[test]
    fn missing_files_name_the_path_and_bootstrap() {
        let cfg = EmbedConfig {
            model_dir: Some(PathBuf::from("/nonexistent/model")),
            ..test_config()
        };
        let err = Embedder::load(cfg).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/model/model.onnx"), "{err}");
        assert!(err.contains("scripts/bootstrap"), "{err}");

        let mut cfg = test_config();
        cfg.model_name = "../etc".into();
        assert!(matches!(Embedder::load(cfg), Err(EmbedError::InvalidConfig(_))));
        let mut cfg = test_config();
        cfg.model_name = "no-such-model".into();
        let err = Embedder::load(cfg).unwrap_err().to_string();
        assert!(err.contains("models/no-such-model/model.onnx"), "{err}");
    }

    #[test]
    fn fastembed_model_names_resolve_to_the_hub_and_directories_win() {
        let cfg = |name: &str| EmbedConfig {
            model_name: name.into(),
            ..test_config()
        };
        // The bootstrap's models are directories even though fastembed knows the same model.
        assert!(matches!(cfg(DEFAULT_MODEL).source(), Ok(Source::Dir(_))));
        assert!(matches!(
            cfg("BGESmallENV15").source(),
            Ok(Source::Hub(EmbeddingModel::BGESmallENV15))
        ));
        assert!(matches!(
            cfg("bgesmallenv15").source(),
            Ok(Source::Hub(EmbeddingModel::BGESmallENV15))
        ));
        assert!(matches!(
            cfg("Xenova/bge-small-en-v1.5").source(),
            Ok(Source::Hub(EmbeddingModel::BGESmallENV15))
        ));
        assert!(matches!(cfg("no-such-model").source(), Ok(Source::Dir(_))));
        assert!(matches!(
            cfg("someone/unknown").source(),
            Err(EmbedError::InvalidConfig(_))
        ));
    }

    #[cfg(not(feature = "hub"))]
    #[test]
    fn hub_models_need_the_hub_feature() {
        let cfg = EmbedConfig {
            model_name: "BGESmallENV15".into(),
            ..test_config()
        };
        let err = Embedder::load(cfg).unwrap_err();
        assert!(matches!(err, EmbedError::HubDisabled { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("--features hub") && msg.contains("ONEBASE_MODEL_DIR"),
            "{msg}"
        );
    }

    /// Offline, the hub path must fail at startup with a clear error, not panic or hang.
    #[cfg(feature = "hub")]
    #[test]
    fn hub_download_failure_is_a_load_error() {
        let cache = tempfile::tempdir().unwrap();
        // Nothing listens on port 9 of the loopback: the download fails at once.
        std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
        let cfg = EmbedConfig {
            model_name: "BGESmallENV15".into(),
            hub_cache: cache.path().to_path_buf(),
            ..test_config()
        };
        let err = Embedder::load(cfg).unwrap_err();
        assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("BGESmallENV15") && msg.contains("model.onnx"), "{msg}");
        assert!(msg.contains("Connection refused"), "the network cause is kept: {msg}");
    }

    /// A model directory in the sentence-transformers layout declares its pooling; CLS pooling
    /// of the same network gives a different (still normalized) vector.
    #[test]
    fn pooling_comes_from_the_model_directory_or_the_setting() {
        let base = test_config().resolved_model_dir();
        let dir = tempfile::tempdir().unwrap();
        for file in std::iter::once(MODEL_FILE).chain(TOKENIZER_FILES) {
            std::os::unix::fs::symlink(base.join(file), dir.path().join(file)).unwrap();
        }
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            br#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        let with_dir = |pooling| EmbedConfig {
            model_dir: Some(dir.path().to_path_buf()),
            pooling,
            ..test_config()
        };
        let texts = strings(&ACCEPT_TEXTS);

        let cls = Embedder::load(with_dir(None)).unwrap();
        assert_eq!(cls.info().pooling, PoolingKind::Cls);
        let cls_vectors = cls.embed_blocking(&texts).unwrap();
        let mean = Embedder::load(with_dir(Some(PoolingKind::Mean))).unwrap();
        assert_eq!(mean.info().pooling, PoolingKind::Mean);
        let mean_vectors = mean.embed_blocking(&texts).unwrap();

        assert_acceptance(&mean_vectors);
        for (c, m) in cls_vectors.vectors.iter().zip(&mean_vectors.vectors) {
            let norm: f32 = c.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4);
            assert!(cosine(c, m) < 0.99, "cls and mean pooling differ");
        }

        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            br#"{"pooling_mode_max_tokens": true}"#,
        )
        .unwrap();
        assert!(matches!(
            Embedder::load(with_dir(None)),
            Err(EmbedError::InvalidConfig(_))
        ));
    }

    #[test]
    fn max_length_rules() {
        let cfg = br#"{"model_max_length": 512}"#;
        let huge = br#"{"model_max_length": 1000000000000000019884624838656}"#;
        let dir = Path::new("/nonexistent");
        assert_eq!(max_length_for("all-MiniLM-L6-v2", dir, cfg), 256);
        assert_eq!(max_length_for("all-MiniLM-L6-v2-int8", dir, cfg), 256);
        assert_eq!(max_length_for("bge-small", dir, br#"{"model_max_length": 128}"#), 128);
        assert_eq!(max_length_for("bge-small", dir, huge), 512);
        assert_eq!(max_length_for("bge-small", dir, b"{}"), 512);
    }
}
