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
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 10
# The graph's parameters, the same for both systems (--m, --ef-construction).
HNSW = {"m": 16, "ef_construction": 128}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def make_data(n: int, queries: int, dim: int, sigma: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        pts = centres[rng.integers(0, len(centres), count)] + rng.normal(scale=sigma / np.sqrt(dim), size=(count, dim)).astype(np.float32)
        return pts / np.linalg.norm(pts, axis=1, keepdims=True)

    return draw(n), draw(queries)


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
    lat = sorted(latencies)
    recall = statistics.mean(len(set(f) & e) / K for f, e in zip(found, expected))
    return {
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "qps": len(lat) / wall,
        "recall": recall,
        "rows": statistics.mean(len(f) for f in found),
    }


def run_clients(search, queries: np.ndarray, clients: int, repeat: int) -> tuple[list[float], float, list[list[int]]]:
    """Runs every query `repeat` times spread over `clients` threads; returns latencies, wall
    time and the first result of each query."""
    jobs = [(i, q) for _ in range(repeat) for i, q in enumerate(queries)]
    latencies: list[float] = []
    found: dict[int, list[int]] = {}
    lock = threading.Lock()

    def worker(part):
        local = []
        for i, q in part:
            t = time.perf_counter()
            ids = search(q)
            local.append(time.perf_counter() - t)
            with lock:
                found.setdefault(i, ids)
        with lock:
            latencies.extend(local)

    parts = [jobs[c::clients] for c in range(clients)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, [found[i] for i in range(len(queries))]


class Onebase:
    name = "onebase"

    def __init__(self, binary: Path, scratch: Path):
        self.scratch = scratch
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.admin = "bench-admin-" + secrets.token_hex(20)
        env = dict(os.environ, ONEBASE_BIND=f"127.0.0.1:{port}", ONEBASE_DATA_DIR=str(scratch / "pgdata"),
                   ONEBASE_PG_PORT=str(free_port()), ONEBASE_ADMIN_KEY=self.admin, ONEBASE_LOG_FORMAT="json",
                   RUST_LOG=os.environ.get("RUST_LOG", "warn"), ONEBASE_TOOLS_DIR=str(ROOT / ".onebase"))
        self.log = open(scratch / "onebase.log", "wb")
        self.proc = subprocess.Popen([str(binary), "serve"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/ready")
        admin = {"Authorization": f"Bearer {self.admin}"}
        tenant = httpx.post(f"{self.url}/v1/tenants", json={"name": "bench"}, headers=admin).json()["id"]
        key = httpx.post(f"{self.url}/v1/tenants/{tenant}/keys", json={"role": "owner"}, headers=admin).json()["key"]
        self.headers = {"Authorization": f"Bearer {key}"}
        self.local = threading.local()

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            # TCP_NODELAY: httpx writes headers and body separately, and Nagle's algorithm would hold
            # the body until the server's delayed ACK (40 ms) of the headers.
            transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            self.local.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=120, transport=transport)
        return self.local.client

    def create(self, dim: int) -> None:
        res = self.client().post("/v1/collections", json={"name": "bench", "embedding": {"dimension": dim},
                                                          "index": {"type": "hnsw", "m": HNSW["m"], "ef_construction": HNSW["ef_construction"]}})
        res.raise_for_status()

    def bulk_import(self, data: np.ndarray) -> None:
        """Through the import endpoint (binary COPY, then one index build): how a million vectors
        arrive, where 4,000 document requests and the merges after them would take most of an hour."""
        self.create(data.shape[1])
        path = self.scratch / "bench.ndjson"
        with open(path, "w") as f:
            for i in range(len(data)):
                # Six decimals (float32 carries about seven digits): 3.5 KB a line, not 7.
                vec = np.round(data[i].astype(np.float64), 6).tolist()
                f.write(json.dumps({"id": str(i), "embedding": vec, "metadata": {"tag": i % 100}}) + "\n")
        with open(path, "rb") as f:
            res = httpx.post(f"{self.url}/v1/collections/bench/import?on_error=abort", content=f, timeout=7200,
                             headers=dict(self.headers, **{"Content-Type": "application/x-ndjson"}))
        res.raise_for_status()
        path.unlink()
        job = res.json()["id"]
        while (state := self.client().get(f"/v1/jobs/{job}").json()["state"]) in ("queued", "running"):
            time.sleep(1)
        if state != "completed":
            raise RuntimeError(f"import job {job}: {state}")
        self.client().get("/v1/collections/bench").raise_for_status()

    def ingest(self, data: np.ndarray, batch: int = 256) -> None:  # onebase's most documents per request
        self.create(data.shape[1])
        for start in range(0, len(data), batch):
            docs = [{"id": str(i), "embedding": data[i].tolist(), "metadata": {"tag": i % 100}}
                    for i in range(start, min(start + batch, len(data)))]
            res = self.client().post("/v1/collections/bench/documents", json={"documents": docs})
            res.raise_for_status()
        self.wait_merged()
        # Statistics for the planner, as autovacuum would gather them a little later.
        self.client().get("/v1/collections/bench").raise_for_status()

    def wait_merged(self) -> None:
        """Fresh rows wait in the collection's pending segment (scanned exactly) until a merge job
        moves them into the HNSW index; searches are timed on the merged, idle collection."""
        t = time.perf_counter()
        while True:
            jobs = self.client().get("/v1/jobs", params={"kind": "merge"}).json()["data"]
            if not any(j["state"] in ("queued", "running") for j in jobs):
                break
            time.sleep(0.5)
        print(f"onebase: merge into the index done {time.perf_counter() - t:.1f} s after the last write", flush=True)

    def search(self, ef: int, filtered: bool):
        def run(q: np.ndarray) -> list[int]:
            body = {"vector": q.tolist(), "k": K, "ef_search": ef, "include": []}
            if filtered:
                body["filter"] = {"tag": 7}
            res = self.client().post("/v1/collections/bench/search", json=body)
            res.raise_for_status()
            return [int(h["document_id"]) for h in res.json()["hits"]]
        return run

    def text_corpus(self, texts: list[str]) -> None:
        self.client().post("/v1/collections", json={"name": "text"}).raise_for_status()
        for start in range(0, len(texts), 100):
            docs = [{"id": str(i), "text": t} for i, t in enumerate(texts[start:start + 100], start)]
            self.client().post("/v1/collections/text/documents", json={"documents": docs}).raise_for_status()
        self.wait_merged()

    def text_search(self, mode: str):
        def run(q: str) -> list[int]:
            res = self.client().post("/v1/collections/text/search", json={"query": q, "mode": mode, "k": K, "include": []})
            res.raise_for_status()
            return [int(h["document_id"]) for h in res.json()["hits"]]
        return run

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


class Chroma:
    name = "chroma"

    def __init__(self, venv: Path, scratch: Path):
        import chromadb

        port = free_port()
        self.log = open(scratch / "chroma.log", "wb")
        self.proc = subprocess.Popen([str(venv / "bin" / "chroma"), "run", "--path", str(scratch / "chroma"), "--host",
                                      "127.0.0.1", "--port", str(port)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat")
        self.port = port
        self.chromadb = chromadb
        self.local = threading.local()

    def collection(self):
        if not hasattr(self.local, "collection"):
            client = self.chromadb.HttpClient(host="127.0.0.1", port=self.port)
            self.local.collection = client.get_collection("bench")
        return self.local.collection

    def ingest(self, data: np.ndarray, batch: int = 500) -> None:
        client = self.chromadb.HttpClient(host="127.0.0.1", port=self.port)
        coll = client.create_collection("bench", configuration={"hnsw": {"space": "cosine", "ef_construction": HNSW["ef_construction"],
                                                                                    "max_neighbors": HNSW["m"]}})
        for start in range(0, len(data), batch):
            end = min(start + batch, len(data))
            coll.add(ids=[str(i) for i in range(start, end)], embeddings=data[start:end],
                     metadatas=[{"tag": i % 100} for i in range(start, end)])

    def set_ef(self, ef: int) -> None:
        client = self.chromadb.HttpClient(host="127.0.0.1", port=self.port)
        client.get_collection("bench").modify(configuration={"hnsw": {"ef_search": ef}})

    def search(self, ef: int, filtered: bool):
        def run(q: np.ndarray) -> list[int]:
            res = self.collection().query(query_embeddings=[q], n_results=K, include=[],
                                          where={"tag": 7} if filtered else None)
            return [int(i) for i in res["ids"][0]]
        return run

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.35)
    ap.add_argument("--efs", default="20,40,100,200")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "onebase"))
    ap.add_argument("--chroma-venv", default="")
    ap.add_argument("--text-docs", type=int, default=2000)
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

    print(f"data: {args.n} x {args.dim}, 2000 clusters, sigma {args.sigma}; {args.queries} queries; k = {K}; "
          f"HNSW m {args.m}, ef_construction {args.ef_construction}", flush=True)
    data, queries = make_data(args.n, args.queries, args.dim, args.sigma)
    expected = truth(data, queries)
    expected_filtered = truth(data, queries, np.arange(args.n) % 100 == 7)

    systems = [Onebase(Path(args.binary), scratch)]
    if args.chroma_venv:
        systems.append(Chroma(Path(args.chroma_venv), scratch))
    rows = []
    try:
        for system in systems:
            t = time.perf_counter()
            if args.bulk and isinstance(system, Onebase):
                system.bulk_import(data)
            else:
                system.ingest(data)
            print(f"{system.name}: ingested {args.n} vectors in {time.perf_counter() - t:.1f} s", flush=True)
        for ef in efs:
            for system in systems:
                if isinstance(system, Chroma):
                    system.set_ef(ef)
                for clients in (1, 8):
                    lat, wall, found = run_clients(system.search(ef, False), queries, clients, 1 if clients == 1 else 2)
                    rows.append((system.name, "all", ef, clients, summarize(lat, wall, found, expected)))
                    print(rows[-1], flush=True)
        for system in systems:
            ef = 100
            if isinstance(system, Chroma):
                system.set_ef(ef)
            lat, wall, found = run_clients(system.search(ef, True), queries, 1, 1)
            rows.append((system.name, "tag=7 (1%)", ef, 1, summarize(lat, wall, found, expected_filtered)))
            print(rows[-1], flush=True)
        sys.path.insert(0, str(ROOT / "scripts"))
        from sentences import sentences  # noqa: E402

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
            text_rows[mode] = 1000 * sorted(lat)[len(lat) // 2]
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


if __name__ == "__main__":
    main()
