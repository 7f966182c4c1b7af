"""Search benchmark: onebase against a ChromaDB server, side by side in one run, on loopback.

Prints figures; asserts nothing. Run with `make bench-search` (N=100000 by default), which builds
the release binary and installs ChromaDB (PyPI `chromadb`, pinned below) into a scratch venv.

Data (documented, deterministic): 2,000 cluster centres uniform on the unit sphere; each vector is
a centre plus Gaussian noise of norm about `sigma` (per-dimension sigma / sqrt(dim)), then
unit-normalized; `tag = id % 100`, so `{"tag": 7}` selects 1%. Queries are fresh points drawn the
same way. Ground truth is exact cosine top-10 (numpy), over all vectors or over the filtered ones.

Measured per system: ingest time; search p50 / p99 latency and QPS with 1 and 8 concurrent clients
at ef_search 20 / 40 / 100 / 200, with recall@10; the 1%-filtered search (rows returned, recall, p50);
and, for onebase, hybrid against vector-only latency on a text corpus (scripts/sentences.py).

`--text-corpus cisi --text-docs 1000000 --text-only` times text search at scale on real text:
documents of 3 to 6 sentences drawn (seeded) from the CISI test collection's abstracts
(../shared/data/ir/cisi, see bench/retrieval.py), each with one of the vectors above (brought by
the client: nothing is embedded), loaded through the import endpoint; probes are CISI's 76 judged
questions, each with a query vector. Text, vector and hybrid p50/p90/p99 with one client.

By hand, from the repository root and in the ChromaDB venv (httpx, numpy, chromadb):
`.onebase/bench-chroma/bin/python -m bench.search --n 2000 --chroma-venv .onebase/bench-chroma`.
The vectors are bench.vectors's; the servers are bench.harness's launchers.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from scripts.sentences import sentences

from . import harness
from .harness import BINARY, ROOT, pct, run_parallel, say
from .retrieval import DATA_DIR, load_cisi
from .vectors import make_data

K = 10
# The graph's parameters, the same for both systems (--m, --ef-construction).
HNSW = {"m": 16, "ef_construction": 128}


def rounded(vector: np.ndarray) -> list[float]:
    """Six decimals (float32 carries about seven digits): 3.5 KB a line of 384, not 7."""
    return np.round(vector.astype(np.float64), 6).tolist()


def truth(data: np.ndarray, queries: np.ndarray, mask: np.ndarray | None = None) -> list[set[int]]:
    ids = np.arange(len(data)) if mask is None else np.nonzero(mask)[0]
    sub = data[ids]
    out = []
    for q in queries:
        sims = sub @ q
        top = np.argpartition(-sims, K)[:K]
        out.append(set(ids[top].tolist()))
    return out


def summarize(latencies: list[float], wall: float, found: list[list[int]], expected: list[set[int]]) -> dict:
    recall = statistics.mean(len(set(f) & e) / K for f, e in zip(found, expected))
    return {
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "qps": len(latencies) / wall,
        "recall": recall,
        "rows": statistics.mean(len(f) for f in found),
    }


def run_clients(search, queries: np.ndarray, clients: int, repeat: int) -> tuple[list[float], float, list[list[int]]]:
    """Runs every query `repeat` times spread over `clients` threads; returns latencies, wall
    time and the first result of each query."""
    jobs = [q for _ in range(repeat) for q in queries]

    def one(q) -> tuple[float, list[int]]:
        t = time.perf_counter()
        ids = search(q)
        return time.perf_counter() - t, ids

    wall, out = run_parallel(jobs, clients, one)
    return [lat for lat, _ in out], wall, [ids for _, ids in out[:len(queries)]]


class Onebase(harness.Onebase):
    """The harness's server, its requests through httpx (as ChromaDB's client makes its own)."""

    def create(self, dim: int) -> None:
        res = self.httpx().post("/v1/collections", json={"name": "bench", "embedding": {"dimension": dim},
                                                         "index": {"type": "hnsw", "m": HNSW["m"], "ef_construction": HNSW["ef_construction"]}})
        res.raise_for_status()

    def bulk_import(self, data: np.ndarray) -> None:
        """Through the import endpoint (binary COPY, then one index build): how a million vectors
        arrive, where 4,000 document requests and the merges after them would take most of an hour."""
        self.create(data.shape[1])
        self.import_lines("bench", ({"id": str(i), "embedding": rounded(data[i]), "metadata": {"tag": i % 100}}
                                    for i in range(len(data))))
        self.httpx().get("/v1/collections/bench").raise_for_status()

    def import_lines(self, collection: str, lines) -> None:
        """Writes `lines` (JSON objects) to an NDJSON file, sends it to the collection's import
        endpoint and waits for the job to complete."""
        path = self.scratch / f"{collection}.ndjson"
        with open(path, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        with open(path, "rb") as f, self.httpx_client(timeout=14400) as upload:
            res = upload.post(f"/v1/collections/{collection}/import?on_error=abort", content=f,
                              headers={"Content-Type": "application/x-ndjson"})
        res.raise_for_status()
        path.unlink()
        job = res.json()["id"]
        while (state := self.httpx().get(f"/v1/jobs/{job}").json()["state"]) in ("queued", "running"):
            time.sleep(1)
        if state != "completed":
            raise RuntimeError(f"import job {job}: {state}")

    def ingest(self, data: np.ndarray, batch: int = 256) -> None:  # onebase's most documents per request
        self.create(data.shape[1])
        for start in range(0, len(data), batch):
            docs = [{"id": str(i), "embedding": data[i].tolist(), "metadata": {"tag": i % 100}}
                    for i in range(start, min(start + batch, len(data)))]
            res = self.httpx().post("/v1/collections/bench/documents", json={"documents": docs})
            res.raise_for_status()
        self.wait_merged()
        # Statistics for the planner, as autovacuum would gather them a little later.
        self.httpx().get("/v1/collections/bench").raise_for_status()

    def wait_merged(self) -> None:
        """Fresh rows wait in the collection's pending segment (scanned exactly) until a merge job
        moves them into the HNSW index; searches are timed on the merged, idle collection."""
        t = time.perf_counter()
        while True:
            jobs = self.httpx().get("/v1/jobs", params={"kind": "merge"}).json()["data"]
            if not any(j["state"] in ("queued", "running") for j in jobs):
                break
            time.sleep(0.5)
        say(f"onebase: merge into the index done {time.perf_counter() - t:.1f} s after the last write")

    def search(self, ef: int, filtered: bool):
        def run(q: np.ndarray) -> list[int]:
            body = {"vector": q.tolist(), "k": K, "ef_search": ef, "include": []}
            if filtered:
                body["filter"] = {"tag": 7}
            res = self.httpx().post("/v1/collections/bench/search", json=body)
            res.raise_for_status()
            return [int(h["document_id"]) for h in res.json()["hits"]]
        return run

    def text_corpus(self, texts: list[str]) -> None:
        self.httpx().post("/v1/collections", json={"name": "text"}).raise_for_status()
        for start in range(0, len(texts), 100):
            docs = [{"id": str(i), "text": t} for i, t in enumerate(texts[start:start + 100], start)]
            self.httpx().post("/v1/collections/text/documents", json={"documents": docs}).raise_for_status()
        self.wait_merged()

    def text_search(self, mode: str):
        def run(q: str) -> list[int]:
            res = self.httpx().post("/v1/collections/text/search", json={"query": q, "mode": mode, "k": K, "include": []})
            res.raise_for_status()
            return [int(h["document_id"]) for h in res.json()["hits"]]
        return run

    def import_text(self, texts: list[str], vectors: np.ndarray) -> None:
        """Documents with their text and a vector each into a collection `text` without a model,
        through the import endpoint; returns when the import and the merge after it are done."""
        res = self.httpx().post("/v1/collections", json={
            "name": "text", "embedding": {"dimension": vectors.shape[1]},
            "index": {"type": "hnsw", "m": HNSW["m"], "ef_construction": HNSW["ef_construction"]}})
        res.raise_for_status()
        self.import_lines("text", ({"id": str(i), "text": text, "embedding": rounded(vectors[i])}
                                   for i, text in enumerate(texts)))
        self.wait_merged()

    def probe(self, mode: str):
        """A search of `text` by a (question, vector) probe in `mode`; the hits' ids."""
        def run(p: tuple[str, np.ndarray]) -> list[int]:
            body: dict = {"mode": mode, "k": K, "include": []}
            if mode != "vector":
                body["query"] = p[0]
            if mode != "text":
                body["vector"] = p[1].tolist()
            res = self.httpx().post("/v1/collections/text/search", json=body)
            res.raise_for_status()
            return [int(h["document_id"]) for h in res.json()["hits"]]
        return run


class Chroma(harness.Chroma):
    def collection(self):
        if not hasattr(self.local, "collection"):
            self.local.collection = self.client().get_collection("bench")
        return self.local.collection

    def ingest(self, data: np.ndarray, batch: int = 500) -> None:
        coll = self.client().create_collection("bench", configuration={"hnsw": {"space": "cosine", "ef_construction": HNSW["ef_construction"],
                                                                                       "max_neighbors": HNSW["m"]}})
        for start in range(0, len(data), batch):
            end = min(start + batch, len(data))
            coll.add(ids=[str(i) for i in range(start, end)], embeddings=data[start:end],
                     metadatas=[{"tag": i % 100} for i in range(start, end)])

    def set_ef(self, ef: int) -> None:
        self.client().get_collection("bench").modify(configuration={"hnsw": {"ef_search": ef}})

    def search(self, ef: int, filtered: bool):
        def run(q: np.ndarray) -> list[int]:
            res = self.collection().query(query_embeddings=[q], n_results=K, include=[],
                                          where={"tag": 7} if filtered else None)
            return [int(i) for i in res["ids"][0]]
        return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.35)
    ap.add_argument("--efs", default="20,40,100,200")
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--chroma-venv", default="")
    ap.add_argument("--text-docs", type=int, default=2000)
    ap.add_argument("--text-corpus", choices=["sentences", "cisi"], default="sentences",
                    help="the text corpus: synthetic sentences embedded by the server (default), or CISI's "
                         "sentences mixed into --text-docs documents with vectors of their own, imported")
    ap.add_argument("--text-only", action="store_true", help="only the text corpus's searches (with --text-corpus cisi)")
    ap.add_argument("--cisi-dir", default=str(DATA_DIR))
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=128,
                    help="onebase's default; at 1M, 64 leaves about 5-10%% of the 2,000 tight clusters unreachable")
    ap.add_argument("--import", dest="bulk", action="store_true",
                    help="load onebase through the import endpoint rather than document requests (for 1M)")
    args = ap.parse_args()
    efs = [int(e) for e in args.efs.split(",")]
    HNSW.update(m=args.m, ef_construction=args.ef_construction)
    scratch = ROOT / "target" / "tmp" / "bench-search"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if args.text_corpus == "cisi":
        text_at_scale(args, scratch)
        if args.text_only:
            return

    say(f"data: {args.n} x {args.dim}, 2000 clusters, sigma {args.sigma}; {args.queries} queries; k = {K}; "
        f"HNSW m {args.m}, ef_construction {args.ef_construction}")
    data, queries = make_data(args.n, args.queries, args.dim, args.sigma)
    expected = truth(data, queries)
    expected_filtered = truth(data, queries, np.arange(args.n) % 100 == 7)

    systems: list = []
    rows = []
    try:
        systems.append(Onebase(Path(args.binary), scratch))
        if args.chroma_venv:
            systems.append(Chroma(Path(args.chroma_venv), scratch))
        for system in systems:
            t = time.perf_counter()
            if args.bulk and isinstance(system, Onebase):
                system.bulk_import(data)
            else:
                system.ingest(data)
            say(f"{system.name}: ingested {args.n} vectors in {time.perf_counter() - t:.1f} s")
        for ef in efs:
            for system in systems:
                if isinstance(system, Chroma):
                    system.set_ef(ef)
                for clients in (1, 8):
                    lat, wall, found = run_clients(system.search(ef, False), queries, clients, 1 if clients == 1 else 2)
                    rows.append((system.name, "all", ef, clients, summarize(lat, wall, found, expected)))
                    say(rows[-1])
        for system in systems:
            ef = 100
            if isinstance(system, Chroma):
                system.set_ef(ef)
            lat, wall, found = run_clients(system.search(ef, True), queries, 1, 1)
            rows.append((system.name, "tag=7 (1%)", ef, 1, summarize(lat, wall, found, expected_filtered)))
            say(rows[-1])
        texts = sentences(args.text_docs)
        onebase = systems[0]
        onebase.text_corpus(texts)
        probes = sentences(args.queries, seed=99)
        # Embed every probe once first, so that both modes are timed on cached query embeddings
        # (the LRU cache): the comparison is of the searches, not of the model.
        run_clients(onebase.text_search("vector"), probes, 1, 1)
        text_rows = {}
        for mode in ("vector", "hybrid"):
            lat, wall, _ = run_clients(onebase.text_search(mode), probes, 1, 1)
            text_rows[mode] = pct(lat, 0.5)
    finally:
        for system in systems:
            system.close()

    print()
    print(f"| system | filter | ef_search | clients | recall@10 | rows | p50 ms | p99 ms | QPS |")
    print(f"|---|---|---|---|---|---|---|---|---|")
    for name, filt, ef, clients, r in rows:
        print(f"| {name} | {filt} | {ef} | {clients} | {r['recall']:.3f} | {r['rows']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps']:.0f} |")
    print()
    print(f"onebase text corpus ({args.text_docs} sentences): vector p50 {text_rows['vector']:.2f} ms, "
          f"hybrid p50 {text_rows['hybrid']:.2f} ms ({text_rows['hybrid'] / text_rows['vector']:.2f}x)")


def cisi_texts(cisi_dir: Path, n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """n documents of 3 to 6 sentences drawn from CISI's abstracts (sentences of 5 words or more),
    and CISI's judged questions."""
    docs, queries, _ = load_cisi(cisi_dir)
    pool = [s.strip() for t in docs.values() for s in re.split(r"(?<=[.?!])\s+", t) if len(s.split()) > 4]
    rng = random.Random(seed)
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(3, 6))) for _ in range(n)], list(queries.values())


def text_at_scale(args, scratch: Path) -> None:
    texts, questions = cisi_texts(Path(args.cisi_dir), args.text_docs)
    vectors, query_vectors = make_data(args.text_docs, len(questions), args.dim, args.sigma)
    probes = list(zip(questions, query_vectors))
    say(f"text corpus: {args.text_docs} documents of CISI sentences with {args.dim}-d vectors; {len(probes)} probes")
    onebase = Onebase(Path(args.binary), scratch)
    rows = {}
    try:
        t = time.perf_counter()
        onebase.import_text(texts, vectors)
        say(f"onebase: imported and merged {args.text_docs} documents in {time.perf_counter() - t:.0f} s")
        del texts, vectors
        # Two passes of every mode first: the timed pass reads a warm cache, as a serving system does.
        for _ in range(2):
            for mode in ("text", "vector", "hybrid"):
                run_clients(onebase.probe(mode), probes, 1, 1)
        for mode in ("text", "vector", "hybrid"):
            lat, _, _ = run_clients(onebase.probe(mode), probes, 1, 2)
            rows[mode] = (pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99))
            say(f"{mode}: p50 {rows[mode][0]:.1f} ms")
    finally:
        onebase.close()
    print()
    print(f"onebase, {args.text_docs} documents of CISI sentences, one client, k {K}, {len(probes)} questions x 2:")
    print("| mode | p50 ms | p90 ms | p99 ms | p50 / vector p50 |")
    print("|---|---|---|---|---|")
    for mode, (p50, p90, p99) in rows.items():
        print(f"| {mode} | {p50:.1f} | {p90:.1f} | {p99:.1f} | {p50 / rows['vector'][0]:.2f} |")


if __name__ == "__main__":
    main()
