#!/usr/bin/env python3
"""The int8 speed-up ceiling: one BERT-shaped MatMul, fp32 vs dynamically quantized.

The int8 model (all-MiniLM-L6-v2-int8) is quantized with onnxruntime's quantize_dynamic, which
turns each MatMul into DynamicQuantizeMatMul: the input is quantized to u8 per call and
multiplied with s8 per-channel weights. Everything else (attention, softmax, LayerNorm, GELU)
stays fp32, so the model as a whole cannot gain more over fp32 than these GEMMs do. This prints
that ratio for the three MatMul shapes of all-MiniLM-L6-v2 (hidden 384, FFN 1536) on this CPU.

Usage: .onebase/venv/bin/python scripts/bench_gemm.py [--rows 480] [--threads 2]
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

# (K, N) of the linear layers: Q/K/V and the attention output, FFN in, FFN out.
SHAPES = [(384, 384), (384, 1536), (1536, 384)]


def matmul_model(k, n, path, rng):
    weight = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def best_ms(path, x, threads, calls=50, rounds=5):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": x})
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, {"x": x})
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=480, help="tokens per call (480 = 32 texts x 15 tokens)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    # quantize_dynamic logs a pre-processing hint for every model; it does not apply to one MatMul.
    logging.getLogger().setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    print(f"MatMul [{args.rows} x K] x [K x N], {args.threads} threads, best of 5 x 50 calls")
    print(f"{'K x N':>10} {'weights':>22} {'fp32 ms':>8} {'int8 ms':>8} {'speed-up':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        for k, n in SHAPES:
            matmul_model(k, n, fp32, rng)
            x = rng.standard_normal((args.rows, k)).astype(np.float32)
            t32 = best_ms(fp32, x, args.threads)
            for reduce_range in (True, False):
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=reduce_range)
                t8 = best_ms(int8, x, args.threads)
                label = "s8 per-channel, 7-bit" if reduce_range else "s8 per-channel"
                print(f"{f'{k}x{n}':>10} {label:>22} {t32:8.3f} {t8:8.3f} {t32 / t8:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
