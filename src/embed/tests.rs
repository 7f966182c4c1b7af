//! The embedder's unit tests, against the real model the bootstrap installs.

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
