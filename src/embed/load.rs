//! Loading the model: where it comes from (a directory, or fastembed's catalogue with the `hub`
//! feature), its pooling, maximum length and precision, and the ONNX Runtime environment.

use super::*;
use crate::config::Config;

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

impl PoolingKind {
    pub(super) fn to_fastembed(self) -> Pooling {
        match self {
            PoolingKind::Mean => Pooling::Mean,
            PoolingKind::Cls => Pooling::Cls,
        }
    }
}

impl EmbedConfig {
    /// The embedder's settings, with paths defaulting into the tools directory.
    pub fn from_config(config: &Config) -> Self {
        let mut cfg = EmbedConfig::new(&config.tools_dir);
        cfg.model_name = config.embed.model_name();
        cfg.model_dir = config.embed.model_dir.clone();
        if let Some(path) = &config.embed.ort_dylib {
            cfg.ort_dylib = path.clone();
        }
        cfg.max_batch = config.embed.embed_max_batch;
        cfg.max_wait = Duration::from_millis(config.embed.embed_max_wait_ms);
        cfg.queue_capacity = config.embed.embed_queue;
        cfg.threads = config.embed.embed_threads;
        cfg.pooling = config.embed.embed_pooling;
        if let Some(dir) = &config.embed.model_cache {
            cfg.hub_cache = dir.clone();
        }
        cfg
    }

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
    pub(super) fn source(&self) -> Result<Source, EmbedError> {
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

    pub(super) fn validate(&self) -> Result<(), EmbedError> {
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
pub(super) enum Source {
    /// A directory with model.onnx and the tokenizer files (what `scripts/bootstrap` installs).
    Dir(PathBuf),
    /// A model of fastembed's catalogue, fetched from the Hugging Face hub (cargo feature `hub`).
    Hub(EmbeddingModel),
}

impl Source {
    pub(super) fn kind(&self) -> ModelSource {
        match self {
            Source::Dir(_) => ModelSource::Directory,
            Source::Hub(_) => ModelSource::Hub,
        }
    }
}

/// A fastembed catalogue model named by its variant (`BGESmallENV15`, case-insensitive) or by its
/// hub repository (`Xenova/bge-small-en-v1.5`).
pub(super) fn hub_model(name: &str) -> Option<EmbeddingModel> {
    if let Ok(model) = name.parse::<EmbeddingModel>() {
        return Some(model);
    }
    TextEmbedding::list_supported_models()
        .into_iter()
        .find(|m| m.model_code.eq_ignore_ascii_case(name))
        .map(|m| m.model)
}

/// Sessions and traits of a model, whichever source it came from.
pub(super) struct Loaded {
    pub(super) sessions: Vec<TextEmbedding>,
    pub(super) precision: Precision,
    pub(super) pooling: PoolingKind,
    pub(super) max_length: usize,
    pub(super) batch_invariant: bool,
    /// The directory (or hub cache) it was loaded from, for errors and `/ready`.
    pub(super) location: String,
}

pub(super) fn load_dir(cfg: &EmbedConfig, model_dir: &Path, intra_threads: usize) -> Result<Loaded, EmbedError> {
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
pub(super) fn pooling_from_dir(model_dir: &Path) -> Result<Option<PoolingKind>, EmbedError> {
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
pub(super) fn load_hub(cfg: &EmbedConfig, model: &EmbeddingModel, intra_threads: usize) -> Result<Loaded, EmbedError> {
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
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
pub(super) fn load_hub(_: &EmbedConfig, model: &EmbeddingModel, _: usize) -> Result<Loaded, EmbedError> {
    Err(EmbedError::HubDisabled {
        name: format!("{model:?}"),
    })
}

pub(super) fn ort_dylib_file_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// What the ONNX graph tells about the model, from its operator names: ONNX stores each node's
/// `op_type` as a plain string, so a byte search finds them without parsing the protobuf.
pub(super) struct GraphTraits {
    pub(super) quantized: bool,
    pub(super) dynamic_quantization: bool,
}

impl GraphTraits {
    pub(super) fn scan(onnx: &[u8]) -> Self {
        let has = |op: &str| memchr::memmem::find(onnx, op.as_bytes()).is_some();
        let dynamic_quantization = has("DynamicQuantizeLinear");
        Self {
            quantized: dynamic_quantization || has("MatMulInteger") || has("QLinearMatMul") || has("QuantizeLinear"),
            dynamic_quantization,
        }
    }
}

pub(super) fn max_length_for(identity: &str, model_dir: &Path, tokenizer_config: &[u8]) -> usize {
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
pub(super) fn ort_environment(dylib: &Path) -> Result<Environment, EmbedError> {
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
