"""Retrieval quality on the CISI test collection (issue 22's instrument; prints figures, asserts nothing).

Loads CISI's 1,460 documents (CISI.ALL, `.T` + `.W` as the text) through the HTTP API into a
fresh server, runs the 76 judged queries of CISI.QRY (their `.W` as the text; judgments CISI.REL,
binary: every pair listed is relevant) in every search
mode the API offers (`vector`, `text`, `hybrid` with its default fusion, RRF k 60 and weighted
0.7/0.3 and 0.5/0.5), `group_by: document`, and prints nDCG@k and recall@k (k 10) in one table
beside reference figures computed here, outside onebase, on the same documents and queries:

- BM25: Okapi BM25 of the `rank_bm25` package (k1 1.5, b 0.75), lowercase alphanumeric tokens,
  no stemming, no stop words;
- vector: exact cosine search with the served model (the exported ONNX all-MiniLM-L6-v2 in
  <tools>/models, run with onnxruntime: each document embedded whole, truncated at 256 tokens as
  the server truncates, mean pooling over the attention mask, L2 normalized);
- fused: RRF (k 60) of the two full rankings, and the min-max normalized scores of both (each
  over the whole collection) weighted 0.7/0.3 and 0.5/0.5 (vector/BM25).

Issue 22 states the reference figures (nDCG@10) this computation should reproduce; the table shows
them beside the ones computed. The onebase side chunks documents (the collection's chunking: the
server's default unless --chunking), which is why its searches group by document.

    make bench-retrieval   (or, from the repository root, in the venv of bench/requirements-retrieval.txt:
                            python -m bench.retrieval --json /tmp/retrieval.json)

The server is the release binary on a fresh embedded cluster (bench.harness's launcher). --json
writes every figure, and each query's nDCG, for comparing runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .harness import BINARY, ROOT, TOOLS, BenchError, Onebase, pct, run_parallel, say, scratch_dir, table

DATA_DIR = (ROOT / ".." / "shared" / "data" / "ir" / "cisi").resolve()
MODEL = "all-MiniLM-L6-v2"
MAX_LENGTH = 256  # tokens the server's embedder keeps of a text (special tokens included; src/embed/)
BM25_K1, BM25_B = 1.5, 0.75
RRF_K = 60
WEIGHTS = [(0.7, 0.3), (0.5, 0.5)]  # (vector, text)

# Issue 22's reference nDCG@10 on CISI (same model, exact cosine, BM25 as above, binary judgments).
EXPECTED = {"vector": 0.4193, "bm25": 0.3062, "rrf": 0.4125, "weighted 0.7/0.3": 0.4380, "weighted 0.5/0.5": 0.4154}


# ---------------------------------------------------------------------------------------------
# The collection

def read_records(path: Path) -> dict[str, dict[str, str]]:
    """The `.I id` records of a SMART-format file: {id: {field letter: text}}. Each field runs from
    its marker line (`.T`, `.W`, ...) to the next marker; lines before the first `.I` are skipped."""
    records: dict[str, dict[str, str]] = {}
    fields: dict[str, list[str]] | None = None
    current: list[str] | None = None
    marker = re.compile(r"^\.([A-Z])(?:\s+(\S+))?\s*$")
    for line in path.read_text(encoding="latin-1").splitlines():
        m = marker.match(line)
        if m and m.group(1) == "I" and m.group(2):
            fields = {}
            records[m.group(2)] = fields  # type: ignore[assignment]
            current = None
        elif m and not m.group(2):
            if fields is None:
                continue
            current = fields.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
    return {rid: {k: " ".join(" ".join(v).split()) for k, v in f.items()} for rid, f in records.items()}


def load_cisi(data_dir: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """(documents {id: title + body}, judged queries {id: text}, judgments {query id: relevant ids})."""
    for name in ("CISI.ALL", "CISI.QRY", "CISI.REL"):
        if not (data_dir / name).is_file():
            raise BenchError(f"{data_dir / name} not found (--data-dir)")
    docs = {i: "\n".join(t for t in (r.get("T", ""), r.get("W", "")) if t) for i, r in read_records(data_dir / "CISI.ALL").items()}
    queries_all = {i: r.get("W", "") for i, r in read_records(data_dir / "CISI.QRY").items()}
    qrels: dict[str, set[str]] = {}
    for line in (data_dir / "CISI.REL").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            qrels.setdefault(parts[0], set()).add(parts[1])
    missing = [d for rel in qrels.values() for d in rel if d not in docs]
    if missing:
        raise BenchError(f"CISI.REL names documents CISI.ALL does not have: {missing[:5]}")
    queries = {q: queries_all[q] for q in sorted(qrels, key=int) if q in queries_all and queries_all[q]}
    return docs, queries, qrels


# ---------------------------------------------------------------------------------------------
# Measures

def ndcg(ranked: list[str], relevant: set[str], k: int) -> float:
    """Binary nDCG@k: sum of 1/log2(rank+1) over the relevant hits, over the ideal's."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def figures(system: str, mode: str, runs: dict[str, list[str]], qrels: dict[str, set[str]], k: int,
            lat: list[float] | None = None, errors: int = 0, expected: float | None = None) -> dict:
    per_query = {q: ndcg(r, qrels[q], k) for q, r in runs.items()}
    n = len(runs)
    return {"system": system, "mode": mode, "queries": n,
            "ndcg": sum(per_query.values()) / n if n else float("nan"),
            "recall": sum(recall(r, qrels[q], k) for q, r in runs.items()) / n if n else float("nan"),
            "p50_ms": pct(lat, 0.5) if lat else None, "mean_ms": 1000 * sum(lat) / len(lat) if lat else None,
            "errors": errors, "expected_ndcg": expected, "ndcg_per_query": per_query}


# ---------------------------------------------------------------------------------------------
# The reference, outside onebase

class Reference:
    """BM25 (rank_bm25) and exact cosine search with the served model (onnxruntime), and their
    fusions, over the whole collection."""

    def __init__(self, docs: dict[str, str], model_dir: Path, threads: int):
        import numpy as np
        import onnxruntime as ort
        from rank_bm25 import BM25Okapi
        from tokenizers import Tokenizer

        self.np = np
        self.ids = list(docs)
        for f in ("model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json"):
            if not (model_dir / f).is_file():
                raise BenchError(f"{model_dir / f} not found (--model-dir; scripts/bootstrap exports the model)")
        # The tokenizer as the server sets it up (fastembed): padding to the longest in the batch,
        # truncation at the model's max length.
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        cfg = json.loads((model_dir / "config.json").read_text())
        pad = json.loads((model_dir / "special_tokens_map.json").read_text())["pad_token"]
        self.tok.enable_padding(pad_id=cfg.get("pad_token_id", 0), pad_token=pad["content"] if isinstance(pad, dict) else pad)
        self.tok.enable_truncation(max_length=MAX_LENGTH)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.sess.get_inputs()}
        t = time.perf_counter()
        self.bm25 = BM25Okapi([tokens(docs[i]) for i in self.ids], k1=BM25_K1, b=BM25_B)
        self.bm25_s = time.perf_counter() - t
        t = time.perf_counter()
        self.doc_emb = self.embed([docs[i] for i in self.ids])
        self.embed_s = time.perf_counter() - t
        self.truncated = sum(bool(e.overflowing) for e in self.tok.encode_batch([docs[i] for i in self.ids]))

    def embed(self, texts: list[str], batch: int = 32):
        """Mean-pooled, L2-normalized embeddings (texts batched by length, returned in order)."""
        np = self.np
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: dict[int, object] = {}
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            encs = self.tok.encode_batch([texts[i] for i in idx])
            mask = np.array([e.attention_mask for e in encs], np.int64)
            feed = {"input_ids": np.array([e.ids for e in encs], np.int64), "attention_mask": mask,
                    "token_type_ids": np.array([e.type_ids for e in encs], np.int64)}
            feed = {k: v for k, v in feed.items() if k in self.input_names}
            hidden = self.sess.run(None, feed)[0]
            m = mask[..., None].astype(np.float32)
            mean = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            mean /= np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
            for j, i in enumerate(idx):
                rows[i] = mean[j]
        return np.stack([rows[i] for i in range(len(texts))]).astype(np.float32)

    def scores(self, query: str):
        """(cosine similarities, BM25 scores) of every document, in self.ids order."""
        return self.doc_emb @ self.embed([query])[0], self.np.asarray(self.bm25.get_scores(tokens(query)), dtype=float)

    def ranked(self, scores, k: int) -> list[str]:
        """The k best ids, ties in collection order."""
        return [self.ids[i] for i in self.np.argsort(-scores, kind="stable")[:k]]

    def rrf(self, vec, bm, k_rrf: int = RRF_K):
        np = self.np
        fused = np.zeros(len(self.ids))
        for s in (vec, bm):
            rank = np.empty(len(self.ids))
            rank[np.argsort(-s, kind="stable")] = np.arange(1, len(self.ids) + 1)
            fused += 1 / (k_rrf + rank)
        return fused

    def weighted(self, vec, bm, wv: float, wt: float):
        def minmax(s):
            lo, hi = s.min(), s.max()
            return (s - lo) / (hi - lo) if hi > lo else s * 0.0
        return wv * minmax(vec) + wt * minmax(bm)


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric tokens (no stemming, no stop words)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def run_reference(docs, queries, qrels, k: int, model_dir: Path, threads: int) -> tuple[list[dict], dict]:
    t = time.perf_counter()
    ref = Reference(docs, model_dir, threads)
    build = {"seconds": time.perf_counter() - t, "bm25_index_s": ref.bm25_s, "embed_s": ref.embed_s,
             "documents_truncated": ref.truncated}
    say(f"reference: {len(docs)} documents embedded whole in {ref.embed_s:.1f} s ({ref.truncated} cut at "
        f"{MAX_LENGTH} tokens), BM25 index in {ref.bm25_s:.2f} s")
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in
                                              ["vector", "bm25", "rrf", *(f"weighted {wv}/{wt}" for wv, wt in WEIGHTS)]}
    for q, text in queries.items():
        vec, bm = ref.scores(text)
        runs["vector"][q] = ref.ranked(vec, k)
        runs["bm25"][q] = ref.ranked(bm, k)
        runs["rrf"][q] = ref.ranked(ref.rrf(vec, bm), k)
        for wv, wt in WEIGHTS:
            runs[f"weighted {wv}/{wt}"][q] = ref.ranked(ref.weighted(vec, bm, wv, wt), k)
    labels = {"vector": "vector (exact cosine, whole docs)", "bm25": f"BM25 (rank_bm25, k1 {BM25_K1}, b {BM25_B})",
              "rrf": f"hybrid RRF k {RRF_K}"}
    labels.update({f"weighted {wv}/{wt}": f"hybrid weighted {wv}/{wt} (min-max)" for wv, wt in WEIGHTS})
    rows = [figures("reference", labels[name], r, qrels, k, expected=EXPECTED.get(name))
            for name, r in runs.items()]
    return rows, build


# ---------------------------------------------------------------------------------------------
# onebase, through the HTTP API

def searches() -> list[tuple[str, dict]]:
    """(label, the request's mode and fusion) of every search run."""
    out = [("vector", {"mode": "vector"}), ("text", {"mode": "text"}),
           ("hybrid (default fusion)", {"mode": "hybrid"}),
           (f"hybrid RRF k {RRF_K}", {"mode": "hybrid", "fusion": {"type": "rrf", "k": RRF_K}})]
    for wv, wt in WEIGHTS:
        out.append((f"hybrid weighted {wv}/{wt}",
                    {"mode": "hybrid", "fusion": {"type": "weighted", "vector_weight": wv, "text_weight": wt}}))
    return out


def run_onebase(docs, queries, qrels, k: int, binary: Path, tools: Path, chunking: dict | None,
                clients: int, batch: int, keep: bool) -> tuple[list[dict], dict]:
    scratch = scratch_dir("bench-retrieval-")
    ob = None
    try:
        t = time.perf_counter()
        ob = Onebase(binary, scratch, tools)
        start_s = time.perf_counter() - t
        body = {"name": "cisi"}
        if chunking:
            body["chunking"] = chunking
        ob.call("POST", "/v1/collections", body)
        items = list(docs.items())
        batches = [items[i:i + batch] for i in range(0, len(items), batch)]
        wall, _ = run_parallel(batches, clients, lambda b: ob.call(
            "POST", "/v1/collections/cisi/documents", {"documents": [{"id": i, "text": text} for i, text in b]}))
        info = ob.call("GET", "/v1/collections/cisi")
        load = {"server_start_s": start_s, "load_s": wall, "documents": info.get("document_count"),
                "chunks": info.get("chunk_count"), "chunking": info.get("chunking"), "clients": clients,
                "batch": batch}
        say(f"onebase: {load['documents']} documents ({load['chunks']} chunks, chunking {json.dumps(load['chunking'])}) "
            f"loaded through the API in {wall:.1f} s ({len(docs) / wall:.0f} documents/s, {clients} clients, "
            f"{batch} per request); server start {start_s:.1f} s")
        if load["documents"] != len(docs):
            raise BenchError(f"the collection holds {load['documents']} documents, {len(docs)} were written")
        # The server caches query embeddings. A first pass embeds every query twice, timing each
        # mode's first call (the model runs in it): hybrid on the query, vector on the query with
        # " ." appended (another cache entry, one token more), in alternating order. Every mode
        # in the table is then timed alike, on the cached embedding.
        first: dict[str, list[float]] = {"vector": [], "hybrid": []}
        for i, text in enumerate(queries.values()):
            calls = [("hybrid", text), ("vector", text + " .")]
            for mode, query in calls if i % 2 == 0 else calls[::-1]:
                _, dt = ob.timed("POST", "/v1/collections/cisi/search",
                                 {"query": query, "mode": mode, "k": k, "group_by": "document", "include": []})
                first[mode].append(dt)
        for mode, lat in first.items():
            load[f"first_{mode}_call_p50_ms"] = pct(lat, 0.5)
            load[f"first_{mode}_call_mean_ms"] = 1000 * sum(lat) / len(lat)
        say(f"onebase: first search of each query (the model embeds it): vector p50 "
            f"{load['first_vector_call_p50_ms']:.1f} ms, hybrid p50 {load['first_hybrid_call_p50_ms']:.1f} ms "
            f"({load['first_hybrid_call_p50_ms'] / load['first_vector_call_p50_ms']:.2f}x); "
            f"the table's latencies reuse the cached embedding")
        rows = []
        for label, spec in searches():
            runs: dict[str, list[str]] = {}
            lat: list[float] = []
            errors: list[str] = []
            for q, text in queries.items():
                req = dict(spec, query=text, k=k, group_by="document", include=[])
                t0 = time.perf_counter()
                status, raw, _ = ob.request("POST", "/v1/collections/cisi/search", req)
                lat.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(f"query {q}: HTTP {status} {raw[:200].decode(errors='replace')}")
                    runs[q] = []
                    continue
                runs[q] = [h["document_id"] for h in json.loads(raw)["hits"]]
            if errors:
                say(f"onebase {label}: {len(errors)} queries failed (counted as empty), e.g. {errors[0]}")
            rows.append(figures("onebase", label, runs, qrels, k, lat, len(errors)))
        return rows, load
    except BaseException:
        if ob is not None:
            say(f"onebase log ({ob.log_path}) ends with:\n{ob.log_tail()}")
        raise
    finally:
        if ob is not None:
            ob.close()
        if keep:
            say(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str | None:
    """The repository's HEAD (with `-dirty` if the work tree has changes), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_chunking(value: str | None) -> dict | None:
    """`MAX` or `MAX:OVERLAP` (tokens), or None/"default" for the server's default."""
    if value is None or value == "default":
        return None
    m = re.fullmatch(r"(\d+)(?::(\d+))?", value)
    if not m:
        raise argparse.ArgumentTypeError("--chunking takes MAX_TOKENS or MAX_TOKENS:OVERLAP_TOKENS, or 'default'")
    out = {"max_tokens": int(m.group(1))}
    if m.group(2) is not None:
        out["overlap_tokens"] = int(m.group(2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR") or str(TOOLS))
    ap.add_argument("--data-dir", default=str(DATA_DIR), help=f"CISI.ALL, CISI.QRY, CISI.REL (default {DATA_DIR})")
    ap.add_argument("--model-dir", help=f"the reference's model (default <tools>/models/{MODEL}, the served one)")
    ap.add_argument("--k", type=int, default=10, help="hits per query, and the cut of nDCG and recall (default 10)")
    ap.add_argument("--chunking", type=parse_chunking, default=None, metavar="MAX[:OVERLAP]",
                    help="the collection's chunking in tokens (default: the server's default)")
    ap.add_argument("--clients", type=int, default=2, help="clients writing the documents (default 2)")
    ap.add_argument("--batch", type=int, default=50, help="documents per write request (default 50)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="onnxruntime threads of the reference embedder (default: usable cores)")
    ap.add_argument("--only", choices=["onebase", "reference"], help="run one side only")
    ap.add_argument("--json", metavar="FILE", help="also write the figures (and each query's nDCG) to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the server's scratch directory")
    args = ap.parse_args()
    tools = Path(args.tools).resolve()
    model_dir = Path(args.model_dir) if args.model_dir else tools / "models" / MODEL
    data_dir = Path(args.data_dir).resolve()
    docs, queries, qrels = load_cisi(data_dir)
    judged = {q: qrels[q] for q in queries}
    say(f"CISI ({data_dir}): {len(docs)} documents, {len(queries)} judged queries, "
        f"{sum(len(r) for r in judged.values())} relevant pairs; k {args.k}")
    say(f"machine: {cpu_name()}, {os.cpu_count()} cores; client, server and reference share them (and with anything else running)")
    rows: list[dict] = []
    meta: dict = {}
    try:
        if args.only != "reference":
            ob_rows, meta["onebase_load"] = run_onebase(docs, queries, judged, args.k, Path(args.binary), tools,
                                                        args.chunking, args.clients, args.batch, args.keep)
            rows += ob_rows
        if args.only != "onebase":
            ref_rows, meta["reference_build"] = run_reference(docs, queries, judged, args.k, model_dir, args.threads)
            rows += ref_rows
    except BenchError as e:
        say(f"error: {e}")
        sys.exit(1)

    k = args.k
    say(f"\nCISI, {len(queries)} judged queries, k {k}; onebase: group_by document, each query one POST .../search "
        "(latency: the HTTP call, the query's embedding cached); reference: outside onebase, ties in collection order")
    table(["system", "mode / fusion", f"nDCG@{k}", f"recall@{k}", "p50 ms", "mean ms", "issue 22 nDCG@10"],
          [[r["system"], r["mode"] + (f" ({r['errors']} failed)" if r["errors"] else ""), f"{r['ndcg']:.4f}",
            f"{r['recall']:.4f}", "-" if r["p50_ms"] is None else f"{r['p50_ms']:.1f}",
            "-" if r["mean_ms"] is None else f"{r['mean_ms']:.1f}",
            "-" if r["expected_ndcg"] is None else f"{r['expected_ndcg']:.4f} ({r['ndcg'] - r['expected_ndcg']:+.4f})"]
           for r in rows])
    if args.json:
        out = {"benchmark": "retrieval", "collection": "CISI", "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "commit": git_commit(),
               "binary": str(Path(args.binary).resolve()), "data_dir": str(data_dir),
               "k": k, "queries": len(queries), "chunking_requested": args.chunking, **meta, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        say(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
