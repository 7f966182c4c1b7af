#!/usr/bin/env python3
"""Reference embedding throughput of an exported model with onnxruntime.

Measures what a caller of an embedding library experiences: tokenization,
inference, mean pooling and L2 normalization, batch by batch in corpus order
(no length sorting, so padding to the longest text in a batch costs what it
costs in production). Rust-side benchmarks are compared against these numbers.

Usage: python scripts/bench_ort.py --model-dir DIR [--batch-sizes 1,8,32,128]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_model import load_tokenizer  # noqa: E402  (same tokenizer settings as the export check)
from sentences import passages, sentences  # noqa: E402


def embed(sess, tok, texts):
    """Normalized mean-pooled embeddings plus the number of real tokens."""
    encs = tok.encode_batch(texts)
    mask = np.array([e.attention_mask for e in encs], np.int64)
    feed = {
        "input_ids": np.array([e.ids for e in encs], np.int64),
        "attention_mask": mask,
        "token_type_ids": np.array([e.type_ids for e in encs], np.int64),
    }
    hidden = sess.run(["last_hidden_state"], feed)[0]
    m = mask[..., None].astype(np.float32)
    mean = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    emb = mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
    return emb, int(mask.sum()), mask.size


def bench_cell(sess, tok, texts, batch, max_seconds):
    """Run whole batches from the corpus start until max_seconds has passed."""
    n_texts = tokens = padded = 0
    elapsed = 0.0
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        t0 = time.perf_counter()
        _, real, total = embed(sess, tok, chunk)
        elapsed += time.perf_counter() - t0
        n_texts += len(chunk)
        tokens += real
        padded += total
        if elapsed >= max_seconds:
            break
    return n_texts, tokens, padded, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--batch-sizes", default="1,8,32,128")
    ap.add_argument("--max-seconds", type=float, default=5.0,
                    help="stop a cell after the batch that crosses this much time (default 5)")
    # Cores this process may actually run on (cgroup/affinity aware on Linux).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ap.add_argument("--threads", type=int, default=cores,
                    help=f"onnxruntime intra-op threads (default: usable cores, here {cores})")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = args.model_dir / "model.onnx"
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    tok = load_tokenizer(args.model_dir)

    corpora = {
        "sentences": sentences(2000, seed=1234),
        "passages": passages(500, seed=99, target_tokens=200),
    }
    # One untimed call so session/arena initialization is not billed to the
    # first cell.
    embed(sess, tok, corpora["sentences"][:8])

    print(f"bench_ort: {model} | onnxruntime {ort.__version__} | intra-op threads {args.threads} "
          f"| max {args.max_seconds:g}s per cell (whole batches, corpus order)")
    print("bench_ort: tokens = real (non-pad) tokens incl. specials; pad% = padding share of "
          "the batch grids; times include tokenization, inference, pooling, normalization")
    for name, texts in corpora.items():
        lengths = [sum(e.attention_mask) for e in tok.encode_batch(texts)]
        print(f"bench_ort: {name}: {len(texts)} texts, {np.mean(lengths):.1f} tokens/text "
              f"(min {min(lengths)}, max {max(lengths)}, incl. [CLS]/[SEP])")
    header = f"{'corpus':<10} {'batch':>5} {'texts':>6} {'tokens':>7} {'pad%':>5} {'secs':>6} " \
             f"{'texts/s':>8} {'tokens/s':>9}"
    print(header)
    print("-" * len(header))
    for name, texts in corpora.items():
        for batch in batch_sizes:
            n, tokens, padded, secs = bench_cell(sess, tok, texts, batch, args.max_seconds)
            print(f"{name:<10} {batch:>5} {n:>6} {tokens:>7} {100 * (1 - tokens / padded):>5.1f} "
                  f"{secs:>6.2f} {n / secs:>8.1f} {tokens / secs:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
