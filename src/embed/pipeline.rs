//! The inference side of the embedder: the worker threads that take coalesced batches off the
//! queue, the pipeline that tokenizes and calls the model for a batch (shared with
//! `Embedder::embed_blocking`), and the counters `/metrics` reads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use fastembed::TextEmbedding;
use tokenizers::Tokenizer;

use super::batcher::{self, Chunk, Queue};
use super::{EmbedError, Embedded, CALL_OVERHEAD_TOKENS};

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic during inference leaves the model usable (ONNX Runtime sessions hold no Rust-side
    // invariants), so recover from poisoning rather than disable embeddings for good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct Worker {
    pub(super) queue: Arc<Queue>,
    pub(super) model: Arc<Mutex<TextEmbedding>>,
    pub(super) pipeline: Arc<Pipeline>,
}

impl Worker {
    pub(super) fn run(self) {
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
pub(super) struct Pipeline {
    /// The model's tokenizer without truncation or padding, to count tokens.
    pub(super) counter: Tokenizer,
    pub(super) max_length: usize,
    /// Whether a text's vector is independent of the other texts in its model call. False for
    /// dynamically quantized models: their activation scales are computed over the whole call
    /// (every text and the padding), so batching would make a text's vector depend on unrelated
    /// requests that happened to be coalesced with it (docs/benchmarks.md says by how much for
    /// all-MiniLM-L6-v2-int8). Such models get one call per text, which on CPU costs little
    /// because it also removes all padding.
    pub(super) batch_invariant: bool,
    pub(super) stats: Arc<EmbedStats>,
}

/// Cumulative work of the model, for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct EmbedStats {
    pub(super) texts: AtomicU64,
    pub(super) tokens: AtomicU64,
    pub(super) model_calls: AtomicU64,
    pub(super) busy_micros: AtomicU64,
}

impl Pipeline {
    pub(super) fn run(&self, model: &mut TextEmbedding, texts: &[&str]) -> Result<Embedded, EmbedError> {
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

    pub(super) fn full_token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
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
