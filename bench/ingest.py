"""Ingest benchmark: onebase against a ChromaDB server, side by side in one run, on loopback.

Prints figures; asserts nothing. Run with `make bench-ingest N=100000`, which runs
`$(CHROMA_VENV)/bin/python -m bench.ingest --n $(N) --chroma-venv $(CHROMA_VENV)` from the
repository root on the release binary (`target/release/onebase serve`, started by bench.harness)
and a ChromaDB server (PyPI `chromadb==1.5.9`) from that venv. Add `--n-large 1000000` for a second,
larger bulk load; `--only bulk,incremental,text,sustained` picks phases; `--skip-chroma` runs
onebase alone.

Data: bench.vectors's `make_data` (2,000 Gaussian clusters on the unit sphere, sigma
0.35, unit-normalized 384-d vectors, `tag = id % 100`). onebase receives the vectors as JSON
numbers with 7 decimals (encoded with numpy, so the client's encoding is not what is measured).

1. Bulk load of N vectors (and of --n-large), rows/s including the index build.
   Chroma: `add` in batches of --batch (1,000) into an HNSW collection (cosine, M 16,
   ef_construction 128), timed until the last add returns. onebase: an HNSW collection (m 16,
   ef_construction 128, its default) and ONE streamed NDJSON import (`POST /v1/collections/bulk/import`, the body
   pre-encoded to a scratch file, untimed, and streamed from it), timed from the start of the
   upload until the import job completes (job progress polled every 0.5 s and shown).
2. Incremental ingest into the collection loaded in 1: --incremental fresh rows (20,000), 1,000
   per request from one client, while a second thread searches (k 10) non-stop: ingest rows/s and
   search p50 / p99 during the ingest (and idle, before it). Then 20 ingested rows are searched
   with their own vector (k 1) to check that every acknowledged row is found.
3. Text (onebase only): --text-docs (2,000) synthetic English documents of 150-300 words
   (scripts/sentences.py's generator). The embedder alone (`POST /v1/embeddings`, 4 clients,
   64 chunks a request, over the very chunks onebase made of the documents, after a warm-up)
   against ingest over HTTP (4 clients, 16 documents a request) and a text import job: docs/s,
   chunks/s, tokens/s, and ingest / embedder-alone in chunks/s.

4. Sustained ingest (`--only sustained`; `--sustained 100000,1000000`, `--sustained-clients 1,4`):
   a loop of 1,000-row requests from each number of clients into an empty HNSW collection
   (Chroma: `add`), timed until the last row is in an ANN index (onebase: the collection's
   `indexing.unindexed_chunks` is 0); every --sample-every seconds (10) 20 searches are timed,
   their recall@10 computed after the load against the exact top 10 of the rows acknowledged
   when each returned; then, after the background work and a pause, idle latency and recall.

Scratch data (the embedded PostgreSQL cluster, Chroma's directory, the NDJSON file: about
4.5 GB for 1,000,000 rows) goes to a temporary directory under /tmp, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from scripts.sentences import _text

from . import harness
from .harness import BINARY, TOOLS, BenchError, ServerError, fmt, pct, run_parallel, say, scratch_dir, table
from .vectors import make_data

DIM = 384
K = 10
TERMINAL = ("completed", "failed", "cancelled")
ACTIVE = ("receiving", "queued", "running")


# ---------------------------------------------------------------------------------------------
# Fast JSON encoding of vectors: json.dumps does about 3 M floats/s, a fraction of what the
# server ingests, so the numbers are written with numpy as fixed-point text, 7 decimals
# (" 0.0123457" / "-0.0123457"; the leading space is JSON whitespace).

_DIGITS = np.frombuffer(b"".join(b"%04d" % i for i in range(10000)), dtype=np.uint8).reshape(10000, 4)


def encode_vectors(block: np.ndarray) -> list[bytes]:
    """Each row of `block` (values within [-9.99, 9.99]) as the bytes of a JSON array."""
    n, d = block.shape
    k = np.rint(block.astype(np.float64) * 1e7).astype(np.int32)
    out = np.empty((n, d, 11), dtype=np.uint8)
    out[:, :, 0] = np.where(k < 0, ord("-"), ord(" "))
    np.abs(k, out=k)
    hi, lo = np.divmod(k, 10000)  # digits d0 d1 d2 d3 and d4 d5 d6 d7 of d0.d1...d7
    hi = _DIGITS[hi]
    out[:, :, 1] = hi[:, :, 0]
    out[:, :, 2] = ord(".")
    out[:, :, 3:6] = hi[:, :, 1:]
    out[:, :, 6:10] = _DIGITS[lo]
    out[:, :, 10] = ord(",")
    rows = out.reshape(n, d * 11)
    rows[:, -1] = ord("]")
    return [b"[" + r.tobytes() for r in rows]


def vector_docs(data: np.ndarray, start: int, end: int) -> list[bytes]:
    """`{"id", "embedding", "metadata"}` objects for rows start..end (ids are the row numbers)."""
    return [b'{"id":"%d","embedding":%s,"metadata":{"tag":%d}}' % (i, v, i % 100)
            for i, v in enumerate(encode_vectors(data[start:end]), start)]


def write_ndjson(path: Path, data: np.ndarray, n: int, block: int = 4096) -> int:
    with open(path, "wb") as f:
        for start in range(0, n, block):
            f.write(b"\n".join(vector_docs(data, start, min(start + block, n))) + b"\n")
    return path.stat().st_size


def file_chunks(path: Path, size: int = 1 << 20):
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def text_docs(n: int, seed: int = 4242) -> list[str]:
    """n English-like documents of 150 to 300 words (scripts/sentences.py's clause generator)."""
    rng = random.Random(seed)
    return [_text(rng, rng.randint(150, 300)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------

class Onebase(harness.Onebase):
    """The harness's server, its requests through httpx (as ChromaDB's client makes its own)."""

    def __init__(self, binary: Path, scratch: Path):
        super().__init__(binary, scratch)
        # Streamed uploads: long timeouts (the server may take its time reading a large body).
        self.upload = self.httpx_client(timeout=httpx.Timeout(7200, connect=30))

    def api(self, method: str, path: str, ok=(200, 201, 202, 204), **kw):
        """One request through this thread's httpx client, its JSON answer; 503 (`overloaded`) is
        retried after its Retry-After (at most 1 s here), counted in retries_503."""
        for attempt in range(600):
            res = self.httpx().request(method, path, **kw)
            if res.status_code != 503 or attempt == 599:
                break
            with self.lock:
                self.retries_503 += 1
            try:
                time.sleep(min(1.0, float(res.headers.get("retry-after") or 0.2)))
            except ValueError:
                time.sleep(0.2)
        if res.status_code not in ok:
            raise ServerError(method, path, None, res.status_code, res.text)
        return res.json() if res.content else None

    def create_collection(self, body: dict) -> None:
        res = self.httpx().delete(f"/v1/collections/{body['name']}")
        if res.status_code not in (200, 204, 404):
            raise ServerError("DELETE", f"/v1/collections/{body['name']}", None, res.status_code, res.text)
        self.api("POST", "/v1/collections", json=body)

    def collection(self, name: str) -> dict:
        return self.api("GET", f"/v1/collections/{name}")

    def search(self, q: np.ndarray, k: int) -> list[str]:
        body = b'{"vector":%s,"k":%d,"include":[]}' % (encode_vectors(q[None, :])[0], k)
        res = self.api("POST", "/v1/collections/bulk/search", content=body,
                       headers={"Content-Type": "application/json"})
        return [str(h["document_id"]) for h in res["hits"]]

    def background_jobs(self, collection: str) -> list[dict] | None:
        """The collection's unfinished jobs (merges...), or None if the job list can't be read."""
        try:
            res = self.httpx().get("/v1/jobs", params={"collection": collection, "limit": 100})
            body = res.json() if res.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        items = body.get("data") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return None
        return [j for j in items if isinstance(j, dict) and j.get("collection", j.get("collection_name")) == collection
                and j.get("state") in ACTIVE]

    def settle(self, collection: str, timeout: float = 3600) -> float | None:
        """Waits for the collection's background jobs (a merge after an import or after writes)
        to finish; returns the seconds waited, or None where jobs can't be listed."""
        start = time.perf_counter()
        jobs = self.background_jobs(collection)
        if jobs is None:
            return None
        kinds = sorted({j.get("kind", "?") for j in jobs})
        while jobs and time.perf_counter() - start < timeout:
            time.sleep(0.5)
            jobs = self.background_jobs(collection) or []
            kinds = sorted(set(kinds) | {j.get("kind", "?") for j in jobs})
        waited = time.perf_counter() - start
        if kinds:
            say(f"onebase: background jobs on {collection} ({', '.join(kinds)}) finished {waited:.1f} s later")
        return waited

    def import_job(self, collection: str, body, label: str) -> dict:
        """Streams an NDJSON body into `collection`'s import endpoint and polls the job to its end.
        Returns upload and total seconds, the final job and the progress samples seen."""
        samples: list[dict] = []
        uploading = threading.Event()
        uploading.set()
        start = time.perf_counter()

        def sample(job: dict) -> None:
            p = job.get("progress") or {}
            samples.append({"t": round(time.perf_counter() - start, 2), "state": job.get("state"),
                            **{k: p.get(k) for k in ("phase", "done", "total", "percent", "rows_per_second", "eta_seconds")}})

        def watch_upload():
            # While the body is still going up the job's id is unknown: look for it in the job list.
            while uploading.is_set():
                time.sleep(0.5)
                for job in (self.background_jobs(collection) or []):
                    if job.get("kind") == "import" and uploading.is_set():
                        sample(job)

        watcher = threading.Thread(target=watch_upload, daemon=True)
        watcher.start()
        try:
            res = self.upload.post(f"/v1/collections/{collection}/import", params={"on_error": "abort"},
                                   headers={"Content-Type": "application/x-ndjson"}, content=body)
        finally:
            uploading.clear()
        upload = time.perf_counter() - start
        if res.status_code not in (200, 201, 202):
            raise ServerError("POST", f"/v1/collections/{collection}/import", None, res.status_code, res.text)
        job = res.json()
        say(f"onebase: {label}: body sent in {upload:.1f} s, job {job.get('id')} {job.get('state')}")
        sample(job)
        last_print = time.perf_counter()
        while job.get("state") not in TERMINAL:
            time.sleep(0.5)
            job = self.api("GET", f"/v1/jobs/{job['id']}")
            sample(job)
            if time.perf_counter() - last_print >= 5:
                last_print = time.perf_counter()
                s = samples[-1]
                say(f"onebase: {label}: {s['state']} {s['phase'] or ''} {s['done']}/{s['total']} ({s['percent']}%), "
                    f"{s['rows_per_second']} rows/s, eta {s['eta_seconds']} s")
        total = time.perf_counter() - start
        if job["state"] != "completed":
            raise BenchError(f"{label}: import job {job['state']}:\n{json.dumps(job, indent=2)}")
        return {"upload_s": upload, "seconds": total, "job": job, "samples": samples, "started": start}

    def bulk_load(self, data: np.ndarray, n: int, scratch: Path) -> dict:
        self.create_collection({"name": "bulk", "embedding": {"dimension": DIM},
                                "index": {"type": "hnsw", "m": 16, "ef_construction": 128}})
        path = scratch / f"bulk-{n}.ndjson"
        t = time.perf_counter()
        size = write_ndjson(path, data, n)
        say(f"onebase: encoded {n} rows as NDJSON ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s (untimed)")
        try:
            out = self.import_job("bulk", file_chunks(path), f"import of {n}")
        finally:
            path.unlink(missing_ok=True)
        # Until every row is in an ANN index: the merges build the graphs of the segments the
        # import filled while it went on (the compaction into fewer graphs comes after, in
        # "bg jobs after s").
        while (self.collection("bulk").get("indexing") or {}).get("unindexed_chunks", 0) != 0:
            time.sleep(0.25)
        indexed = time.perf_counter() - out["started"]
        if indexed > out["seconds"]:
            say(f"onebase: import of {n}: job completed at {out['seconds']:.1f} s, every row indexed at {indexed:.1f} s")
            out["seconds"] = indexed
        out["document_count"] = self.collection("bulk")["document_count"]
        out["background_s"] = self.settle("bulk")
        t = time.perf_counter()
        self.search(data[0], K)
        out["first_query_ms"] = 1000 * (time.perf_counter() - t)
        return out

    def add_rows(self, data: np.ndarray, start: int, end: int) -> None:
        docs = vector_docs(data, start, end)
        step = getattr(self, "max_batch", len(docs))
        for s in range(0, len(docs), step):
            body = b'{"documents":[' + b",".join(docs[s:s + step]) + b"]}"
            try:
                self.api("POST", "/v1/collections/bulk/documents", content=body,
                         headers={"Content-Type": "application/json"})
            except ServerError as e:
                # A server with a smaller per-request cap than the batch: split, and say so.
                m = re.search(r"1 to (\d+) documents", e.text)
                if e.status != 400 or not m or hasattr(self, "max_batch"):
                    raise
                self.max_batch = int(m.group(1))
                say(f"onebase: NOTE the server takes at most {self.max_batch} documents per request; "
                    f"each batch of {end - start} is sent as several requests")
                return self.add_rows(data, start, end)

    def count(self) -> int:
        return self.collection("bulk")["document_count"]


class Chroma(harness.Chroma):
    def collection(self):
        if not hasattr(self.local, "collection"):
            self.local.collection = self.client().get_collection("bulk")
        return self.local.collection

    def bulk_load(self, data: np.ndarray, n: int, batch: int) -> dict:
        client = self.client()
        if "bulk" in [c if isinstance(c, str) else c.name for c in client.list_collections()]:
            client.delete_collection("bulk")
        self.local = threading.local()  # forget the old collection's handles
        coll = self.client().create_collection(
            "bulk", configuration={"hnsw": {"space": "cosine", "ef_construction": 128, "max_neighbors": 16}})
        start = time.perf_counter()
        last_print = start
        for s in range(0, n, batch):
            e = min(s + batch, n)
            coll.add(ids=[str(i) for i in range(s, e)], embeddings=data[s:e], metadatas=[{"tag": i % 100} for i in range(s, e)])
            if time.perf_counter() - last_print >= 10:
                last_print = time.perf_counter()
                say(f"chroma: load of {n}: {e} rows, {e / (last_print - start):.0f} rows/s")
        seconds = time.perf_counter() - start
        out = {"seconds": seconds, "document_count": coll.count()}
        t = time.perf_counter()
        self.search(data[0], K)
        out["first_query_ms"] = 1000 * (time.perf_counter() - t)
        return out

    def search(self, q: np.ndarray, k: int) -> list[str]:
        return list(self.collection().query(query_embeddings=[q], n_results=k, include=[])["ids"][0])

    def add_rows(self, data: np.ndarray, start: int, end: int) -> None:
        self.collection().add(ids=[str(i) for i in range(start, end)], embeddings=data[start:end],
                              metadatas=[{"tag": i % 100} for i in range(start, end)])

    def count(self) -> int:
        return self.collection().count()


# ---------------------------------------------------------------------------------------------

def bulk_phase(systems, data, sizes, args, scratch, results) -> None:
    for n in sizes:
        for system in systems:
            say(f"{system.name}: bulk load of {n} vectors ...")
            if isinstance(system, Onebase):
                r = system.bulk_load(data, n, scratch)
            else:
                r = system.bulk_load(data, n, args.batch)
            r["rows_per_s"] = n / r["seconds"]
            samples = r.pop("samples", [])
            r.pop("started", None)
            job = r.pop("job", None)
            results["bulk"].append({"system": system.name, "n": n, **r})
            say(f"{system.name}: loaded {n} in {r['seconds']:.1f} s = {r['rows_per_s']:.0f} rows/s; "
                f"document_count {r['document_count']} ({'OK' if r['document_count'] == n else 'MISMATCH'}); "
                f"first query {r['first_query_ms']:.1f} ms")
            if samples:
                step = max(1, len(samples) // 8)
                say(f"{system.name}: job progress samples ({len(samples)} seen, every {step}th and the last):")
                for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
                    say(f"    {json.dumps(s)}")
            if job is not None:
                say(f"{system.name}: final job: {json.dumps(job)}")


def incremental_phase(systems, data, queries, base, count, batch, results) -> None:
    picks = random.Random(11).sample(range(base, base + count), min(20, count))
    for system in systems:
        idle = []
        for q in queries[:200]:
            t = time.perf_counter()
            system.search(q, K)
            idle.append(time.perf_counter() - t)
        latencies: list[float] = []
        stop = threading.Event()
        errors: list[BaseException] = []

        def searcher():
            i = 0
            try:
                while not stop.is_set():
                    q = queries[i % len(queries)]
                    i += 1
                    t = time.perf_counter()
                    system.search(q, K)
                    latencies.append(time.perf_counter() - t)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                errors.append(e)

        say(f"{system.name}: incremental ingest of {count} rows into {base}, {batch} per request, with a searcher ...")
        thread = threading.Thread(target=searcher)
        thread.start()
        start = time.perf_counter()
        last_print = start
        try:
            for s in range(base, base + count, batch):
                system.add_rows(data, s, min(s + batch, base + count))
                if errors:
                    break
                if time.perf_counter() - last_print >= 5:
                    last_print = time.perf_counter()
                    say(f"{system.name}: {s + batch - base} rows, {(s + batch - base) / (last_print - start):.0f} rows/s, "
                        f"{len(latencies)} searches")
            seconds = time.perf_counter() - start
        finally:
            stop.set()
            thread.join()
        if errors:
            raise errors[0]
        found = sum(1 for i in picks if system.search(data[i], 1)[:1] == [str(i)])
        document_count = system.count()
        r = {"system": system.name, "base": base, "rows": count, "seconds": seconds, "rows_per_s": count / seconds,
             "searches": len(latencies), "search_p50_ms": pct(latencies, 0.5), "search_p99_ms": pct(latencies, 0.99),
             "idle_p50_ms": pct(idle, 0.5), "idle_p99_ms": pct(idle, 0.99), "self_found": found, "self_probes": len(picks),
             "document_count": document_count, "expected_count": base + count}
        results["incremental"].append(r)
        say(f"{system.name}: {count} rows in {seconds:.1f} s = {r['rows_per_s']:.0f} rows/s; {len(latencies)} searches meanwhile, "
            f"p50 {r['search_p50_ms']:.2f} ms, p99 {r['search_p99_ms']:.2f} ms (idle p50 {r['idle_p50_ms']:.2f} ms); "
            f"own vector top-1 {found}/{len(picks)}; document_count {document_count} "
            f"({'OK' if document_count == base + count else 'expected %d' % (base + count)})")
        if isinstance(system, Onebase):
            system.settle("bulk")


# ---------------------------------------------------------------------------------------------
# Sustained ingest (issue 23): a loop of `batch`-row requests from `clients` clients into an
# empty HNSW collection, timed until the last row is in an ANN index, with searches sampled
# every `every` seconds meanwhile (latency, and recall@10 against the exact top 10 of the rows
# acknowledged by the time the search returned, computed after the load so that the client's
# arithmetic does not share the CPU with the servers).

SUSTAINED = "sustained"


def sustained_create(system) -> None:
    if isinstance(system, Onebase):
        system.create_collection({"name": SUSTAINED, "embedding": {"dimension": DIM},
                                  "index": {"type": "hnsw", "m": 16, "ef_construction": 128}})
    else:
        client = system.client()
        if SUSTAINED in [c if isinstance(c, str) else c.name for c in client.list_collections()]:
            client.delete_collection(SUSTAINED)
        system.local = threading.local()
        client.create_collection(
            SUSTAINED, configuration={"hnsw": {"space": "cosine", "ef_construction": 128, "max_neighbors": 16}})


def sustained_add(system, data: np.ndarray, start: int, end: int) -> None:
    if isinstance(system, Onebase):
        body = b'{"documents":[' + b",".join(vector_docs(data, start, end)) + b"]}"
        system.api("POST", f"/v1/collections/{SUSTAINED}/documents", content=body,
                   headers={"Content-Type": "application/json"})
    else:
        if not hasattr(system.local, "sustained"):
            system.local.sustained = system.client().get_collection(SUSTAINED)
        system.local.sustained.add(ids=[str(i) for i in range(start, end)], embeddings=data[start:end],
                                   metadatas=[{"tag": i % 100} for i in range(start, end)])


def sustained_search(system, q: np.ndarray, k: int) -> list[int]:
    if isinstance(system, Onebase):
        body = b'{"vector":%s,"k":%d,"include":[]}' % (encode_vectors(q[None, :])[0], k)
        res = system.api("POST", f"/v1/collections/{SUSTAINED}/search", content=body,
                         headers={"Content-Type": "application/json"})
        return [int(h["document_id"]) for h in res["hits"]]
    if not hasattr(system.local, "sustained"):
        system.local.sustained = system.client().get_collection(SUSTAINED)
    return [int(i) for i in system.local.sustained.query(query_embeddings=[q], n_results=k, include=[])["ids"][0]]


def recall(data: np.ndarray, rows: np.ndarray, q: np.ndarray, got: list[int], k: int = K) -> float:
    """recall@k of `got` against the exact (cosine) top k of data[rows]."""
    if len(rows) == 0:
        return float("nan")
    sims = data[rows] @ q
    top = rows[np.argpartition(-sims, min(k, len(rows)) - 1)[:k]] if len(rows) > k else rows
    return len(set(top.tolist()) & set(got)) / min(k, len(rows))


def sustained_phase(systems, data, queries, sizes, clients_list, batch, every, per_sample, results) -> None:
    for n in sizes:
        for clients in clients_list:
            for system in systems:
                say(f"{system.name}: sustained ingest of {n} rows, {batch} per request, {clients} client(s) ...")
                sustained_create(system)
                batches = list(range(0, n, batch))
                done = np.zeros(len(batches), dtype=bool)
                lock = threading.Lock()
                acked = [0]
                probes: list[tuple[float, int, list[int], float, np.ndarray]] = []  # t, query, ids, s, batches done
                stop = threading.Event()
                start = time.perf_counter()

                def sampler():
                    j = 0
                    next_t = start + every
                    while not stop.wait(max(0.0, next_t - time.perf_counter())):
                        next_t += every
                        for _ in range(per_sample):
                            qi = j % len(queries)
                            j += 1
                            t = time.perf_counter()
                            got = sustained_search(system, queries[qi], K)
                            lat = time.perf_counter() - t
                            with lock:
                                mask = done.copy()
                            probes.append((t - start, qi, got, lat, mask))

                def post(b: int) -> None:
                    s = batches[b]
                    sustained_add(system, data, s, min(s + batch, n))
                    with lock:
                        done[b] = True
                        acked[0] += min(s + batch, n) - s

                watcher = threading.Thread(target=sampler, daemon=True)
                watcher.start()
                last_print = [start]

                def progress(b: int) -> None:
                    post(b)
                    now = time.perf_counter()
                    if now - last_print[0] >= 10:
                        last_print[0] = now
                        say(f"{system.name}: {acked[0]} rows acknowledged, {acked[0] / (now - start):.0f} rows/s, "
                            f"{len(probes)} searches sampled")

                try:
                    run_parallel(list(range(len(batches))), clients, progress)
                    ack_s = time.perf_counter() - start
                    indexed_s = ack_s
                    if isinstance(system, Onebase):
                        # Until the last acknowledged row is in an ANN index (searches go on).
                        while True:
                            state = system.collection(SUSTAINED).get("indexing") or {}
                            if state.get("unindexed_chunks", 1) == 0:
                                break
                            if time.perf_counter() - start > 4 * 3600:
                                raise BenchError("the rows were not indexed within 4 hours")
                            time.sleep(0.25)
                        indexed_s = time.perf_counter() - start
                finally:
                    stop.set()
                    watcher.join()
                segments = None
                settled_s = None
                if isinstance(system, Onebase):
                    segments = (system.collection(SUSTAINED).get("indexing") or {}).get("segments")
                    system.settle(SUSTAINED, timeout=4 * 3600)
                    settled_s = time.perf_counter() - start
                    segments = (system.collection(SUSTAINED).get("indexing") or {}).get("segments")
                idle = []
                idle_recall = []
                all_rows = np.arange(n)
                # Idle: after the background work and a pause (autovacuum of the fresh tables), and
                # a warm-up (the first searches of a fresh collection read cold pages).
                time.sleep(15)
                for qi in range(200, 250):
                    sustained_search(system, queries[qi % len(queries)], K)
                for qi in range(400):
                    qi %= len(queries)
                    t = time.perf_counter()
                    got = sustained_search(system, queries[qi], K)
                    idle.append(time.perf_counter() - t)
                    idle_recall.append(recall(data, all_rows, queries[qi], got))
                # Recall of each sampled search against the rows acknowledged when it returned.
                per_window: dict[int, list[float]] = {}
                lat = []
                for t, qi, got, l, mask in probes:
                    rows = np.concatenate([np.arange(batches[b], min(batches[b] + batch, n)) for b in np.flatnonzero(mask)]) \
                        if mask.any() else np.arange(0)
                    r = recall(data, rows, queries[qi], got)
                    if r == r:
                        per_window.setdefault(int(t // every), []).append(r)
                    lat.append(l)
                window_recalls = [float(np.mean(v)) for v in per_window.values()]
                row = {"system": system.name, "n": n, "clients": clients, "ack_s": ack_s, "indexed_s": indexed_s,
                       "settled_s": settled_s, "rows_per_s": n / indexed_s, "segments": segments,
                       "load_searches": len(lat), "load_p50_ms": pct(lat, 0.5), "load_p99_ms": pct(lat, 0.99),
                       "idle_p50_ms": pct(idle, 0.5), "idle_p99_ms": pct(idle, 0.99),
                       "load_recall_min": min(window_recalls) if window_recalls else float("nan"),
                       "load_recall_mean": float(np.mean(window_recalls)) if window_recalls else float("nan"),
                       "idle_recall": float(np.mean(idle_recall))}
                results["sustained"].append(row)
                say(f"{system.name}: {n} rows, {clients} client(s): acknowledged in {ack_s:.1f} s, all indexed at "
                    f"{indexed_s:.1f} s = {row['rows_per_s']:.0f} rows/s"
                    + (f", compactions done at {settled_s:.1f} s ({segments} segments)" if settled_s else "")
                    + f"; searches during the load p50 {row['load_p50_ms']:.1f} / p99 {row['load_p99_ms']:.1f} ms "
                    f"(idle {row['idle_p50_ms']:.1f} / {row['idle_p99_ms']:.1f}), recall@10 per 10 s window "
                    f"min {row['load_recall_min']:.3f} mean {row['load_recall_mean']:.3f}, idle {row['idle_recall']:.3f}")


def text_row(kind: str, n_docs: int, n_chunks: int, tokens: int, wall: float, emb: dict, coll: dict) -> dict:
    """One row of the text table: rates and the ratio to the embedder alone in chunks/s."""
    return {"kind": kind, "docs": n_docs, "chunks": n_chunks, "tokens": tokens, "seconds": wall,
            "docs_per_s": n_docs / wall, "chunks_per_s": n_chunks / wall, "tokens_per_s": tokens / wall,
            "ratio": (n_chunks / wall) / emb["chunks_per_s"], "document_count": coll["document_count"]}


def text_phase(ob: Onebase, n_docs: int, results: dict, threads: int = 4) -> None:
    docs = text_docs(n_docs)
    words = sum(len(d.split()) for d in docs)
    say(f"text: {n_docs} documents, {words / n_docs:.0f} words on average")
    model = ob.api("GET", "/v1/models")["data"][0]["id"]
    items = [{"id": f"d{i}", "text": t, "metadata": {"tag": i % 100}} for i, t in enumerate(docs)]
    batches = [items[i:i + 16] for i in range(0, len(items), 16)]

    def ingest(collection: str):
        def post(batch):
            res = ob.api("POST", f"/v1/collections/{collection}/documents", json={"documents": batch})
            return sum(d["chunks"] for d in res["documents"])
        return post

    # 1. Warm-up, and the chunks onebase makes of the documents.
    ob.create_collection({"name": "text"})
    wall, counts = run_parallel(batches, threads, ingest("text"))
    say(f"text: warm-up ingest into `text`: {wall:.1f} s, {sum(counts)} chunks")
    _, lists = run_parallel([it["id"] for it in items], threads,
                            lambda i: ob.api("GET", f"/v1/collections/text/documents/{i}/chunks"))
    chunks = [c["text"] for body in lists for c in (body.get("data") or body.get("chunks") or [])]

    # 2. The embedder alone on those chunks, 64 per request (base64: no float formatting to pay).
    def embed(batch):
        res = ob.api("POST", "/v1/embeddings", json={"model": model, "input": batch, "encoding_format": "base64"})
        return res["usage"]["total_tokens"]

    eb = [chunks[i:i + 64] for i in range(0, len(chunks), 64)]
    run_parallel(eb[:2 * threads], threads, embed)  # warm-up
    wall, tokens = run_parallel(eb, threads, embed)
    tokens = sum(tokens)
    emb = {"kind": "embedder alone", "docs": None, "chunks": len(chunks), "tokens": tokens, "seconds": wall,
           "docs_per_s": None, "chunks_per_s": len(chunks) / wall, "tokens_per_s": tokens / wall}
    results["text"].append(emb)
    say(f"text: embedder alone ({model}): {len(chunks)} chunks, {tokens} tokens in {wall:.1f} s = "
        f"{emb['chunks_per_s']:.0f} chunks/s, {emb['tokens_per_s']:.0f} tokens/s")

    # 3. Ingest over HTTP: 4 clients, 16 documents a request.
    ob.create_collection({"name": "text2"})
    wall, counts = run_parallel(batches, threads, ingest("text2"))
    n_chunks = sum(counts)
    coll = ob.collection("text2")
    r = text_row("POST documents", n_docs, n_chunks, tokens, wall, emb, coll)
    results["text"].append(r)
    say(f"text: ingest into `text2`: {wall:.1f} s = {r['docs_per_s']:.0f} docs/s, {r['chunks_per_s']:.0f} chunks/s "
        f"({r['ratio']:.2f}x the embedder alone); document_count {coll['document_count']}")

    # 4. A text import job.
    ob.create_collection({"name": "text3"})
    body = b"".join(json.dumps(it, ensure_ascii=False).encode() + b"\n" for it in items)

    def pieces():
        for i in range(0, len(body), 1 << 20):
            yield body[i:i + (1 << 20)]

    job = ob.import_job("text3", pieces(), f"text import of {n_docs}")
    coll = ob.collection("text3")
    wall, n_chunks = job["seconds"], coll.get("chunk_count") or 0
    r = text_row("import job", n_docs, n_chunks, tokens, wall, emb, coll)
    results["text"].append(r)
    say(f"text: import into `text3`: {wall:.1f} s = {r['docs_per_s']:.0f} docs/s, {r['chunks_per_s']:.0f} chunks/s "
        f"({r['ratio']:.2f}x the embedder alone); document_count {coll['document_count']}, chunk_count {n_chunks}")
    for s in job["samples"][:: max(1, len(job["samples"]) // 6)]:
        say(f"    {json.dumps(s)}")


# ---------------------------------------------------------------------------------------------

def ratio(results: list[dict], key: str, **match) -> float | None:
    by = {r["system"]: r[key] for r in results if all(r.get(k) == v for k, v in match.items())}
    return by["onebase"] / by["chroma"] if "onebase" in by and by.get("chroma") else None


def report(results: dict) -> dict:
    summary: dict = {}
    print()
    if results["bulk"]:
        print("Bulk load (rows/s including the index build; onebase: upload start to import job completed)")
        rows = []
        for r in results["bulk"]:
            x = ratio(results["bulk"], "rows_per_s", n=r["n"]) if r["system"] == "onebase" else None
            rows.append([r["system"], str(r["n"]), fmt(r["seconds"], ".1f"), fmt(r["rows_per_s"]),
                         fmt(x, ".2f") + ("x" if x else ""), fmt(r.get("upload_s"), ".1f"), fmt(r.get("background_s"), ".1f"),
                         fmt(r["first_query_ms"], ".1f"), "OK" if r["document_count"] == r["n"] else str(r["document_count"])])
            summary[f"bulk_{r['n']}_{r['system']}_rows_per_s"] = round(r["rows_per_s"])
            if x:
                summary[f"bulk_{r['n']}_ratio"] = round(x, 2)
        table(["system", "N", "seconds", "rows/s", "onebase/chroma (target >= 3x)", "upload s", "bg jobs after s",
               "1st query ms", "count"], rows)
    if results["incremental"]:
        print("Incremental ingest (one client, 1,000 rows a request) with one searching client")
        rows = []
        x = ratio(results["incremental"], "rows_per_s")
        for r in results["incremental"]:
            rows.append([r["system"], str(r["base"]), str(r["rows"]), fmt(r["rows_per_s"]),
                         (fmt(x, ".2f") + "x") if x and r["system"] == "onebase" else "-",
                         str(r["searches"]), fmt(r["search_p50_ms"], ".2f"), fmt(r["search_p99_ms"], ".2f"),
                         fmt(r["idle_p50_ms"], ".2f"), f"{r['self_found']}/{r['self_probes']}",
                         "OK" if r["document_count"] == r["expected_count"] else str(r["document_count"])])
            for k in ("rows_per_s", "search_p50_ms", "search_p99_ms", "self_found"):
                summary[f"incremental_{r['system']}_{k}"] = round(r[k], 2)
        if x:
            summary["incremental_ratio"] = round(x, 2)
        table(["system", "base N", "rows", "rows/s", "onebase/chroma (target >= 1x, moonshot 3x)", "searches",
               "search p50 ms", "search p99 ms", "idle p50 ms", "own vector top-1", "count"], rows)
    if results["text"]:
        print("Text (onebase): ingest against the embedder alone on the same chunks")
        rows = []
        for r in results["text"]:
            rows.append([r["kind"], fmt(r["docs"]), str(r["chunks"]), str(r["tokens"]), fmt(r["seconds"], ".1f"),
                         fmt(r["docs_per_s"]), fmt(r["chunks_per_s"]), fmt(r["tokens_per_s"]),
                         fmt(r.get("ratio"), ".2f")])
            key = r["kind"].replace(" ", "_")
            summary[f"text_{key}_chunks_per_s"] = round(r["chunks_per_s"], 1)
            if r.get("ratio") is not None:
                summary[f"text_{key}_ratio"] = round(r["ratio"], 3)
        table(["run", "docs", "chunks", "tokens", "seconds", "docs/s", "chunks/s", "tokens/s",
               "/ embedder chunks/s (target >= 0.9)"], rows)
    if results["sustained"]:
        print("Sustained ingest (1,000 rows a request; rows/s until the last row is in an ANN index; "
              "searches sampled every 10 s during the load)")
        rows = []
        for r in results["sustained"]:
            x = ratio(results["sustained"], "rows_per_s", n=r["n"], clients=r["clients"]) if r["system"] == "onebase" else None
            p99x = r["load_p99_ms"] / r["idle_p99_ms"] if r["idle_p99_ms"] else None
            rows.append([r["system"], str(r["n"]), str(r["clients"]), fmt(r["ack_s"], ".1f"), fmt(r["indexed_s"], ".1f"),
                         fmt(r["rows_per_s"]), fmt(x, ".2f") + ("x" if x else ""), fmt(r["settled_s"], ".1f"),
                         fmt(r["segments"]), fmt(r["load_p50_ms"], ".1f"), fmt(r["load_p99_ms"], ".1f"),
                         fmt(r["idle_p99_ms"], ".1f"), fmt(p99x, ".2f"), fmt(r["load_recall_min"], ".3f"),
                         fmt(r["idle_recall"], ".3f")])
            key = f"sustained_{r['n']}_{r['clients']}c_{r['system']}"
            summary[f"{key}_rows_per_s"] = round(r["rows_per_s"])
            summary[f"{key}_load_p99_ms"] = round(r["load_p99_ms"], 1)
            summary[f"{key}_recall_min"] = round(r["load_recall_min"], 3)
            if x:
                summary[f"sustained_{r['n']}_{r['clients']}c_ratio"] = round(x, 2)
        table(["system", "N", "clients", "acked s", "indexed s", "rows/s", "onebase/chroma (target >= 1x)",
               "compacted s", "segments", "load p50 ms", "load p99 ms", "idle p99 ms", "p99 load/idle (<= 3)",
               "recall@10 min (>= 0.95)", "idle recall@10"], rows)
    print(json.dumps(summary, sort_keys=True), flush=True)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="bulk load size")
    ap.add_argument("--n-large", type=int, default=0, help="a second, larger bulk load (0: none)")
    ap.add_argument("--incremental", type=int, default=20_000, help="rows added one batch at a time")
    ap.add_argument("--incremental-batch", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000, help="Chroma's rows per add in the bulk load")
    ap.add_argument("--text-docs", type=int, default=2000)
    ap.add_argument("--sigma", type=float, default=0.35)
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--chroma-venv", default=str(TOOLS / "bench-chroma"))
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--skip-onebase", action="store_true", help="Chroma alone (to check the script)")
    ap.add_argument("--only", default="bulk,incremental,text",
                    help="comma list of bulk, incremental, text, sustained")
    ap.add_argument("--sustained", default="100000", help="comma list of sizes for the sustained phase")
    ap.add_argument("--sustained-clients", default="1,4", help="comma list of client counts for the sustained phase")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between search samples during the load")
    args = ap.parse_args()
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    known = {"bulk", "incremental", "text", "sustained"}
    if phases - known:
        ap.error(f"--only: unknown phase(s) {', '.join(sorted(phases - known))}")
    sustained_sizes = [int(x) for x in args.sustained.split(",") if x.strip()] if "sustained" in phases else []
    sustained_clients = [int(x) for x in args.sustained_clients.split(",") if x.strip()]
    use_onebase = not args.skip_onebase
    use_chroma = not args.skip_chroma and bool(phases & {"bulk", "incremental", "sustained"})
    if use_onebase and not Path(args.binary).is_file():
        sys.exit(f"no onebase binary at {args.binary} (cargo build --release, or --binary)")
    if use_chroma:
        if not (Path(args.chroma_venv) / "bin" / "chroma").exists():
            sys.exit(f"no ChromaDB venv at {args.chroma_venv}: python3 -m venv {args.chroma_venv} && "
                     f"{args.chroma_venv}/bin/pip install chromadb==1.5.9 (or --skip-chroma)")
        try:
            import chromadb  # noqa: F401
        except ImportError:
            sys.exit(f"chromadb is not importable here: run this script with {args.chroma_venv}/bin/python")
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    sizes = [args.n] + ([args.n_large] if args.n_large else [])
    base = sizes[-1]
    if "bulk" not in phases:
        sizes = [base] if "incremental" in phases else []  # the incremental phase needs a loaded collection
    vector_phases = bool(sizes)
    results: dict = {"bulk": [], "incremental": [], "text": [], "sustained": []}
    scratch = scratch_dir("bench-ingest-")
    systems: list = []
    failed = False
    try:
        if vector_phases or sustained_sizes:
            total = max(base + (args.incremental if "incremental" in phases else 0) if vector_phases else 0,
                        max(sustained_sizes, default=0))
            say(f"data: {total} x {DIM}, 2000 clusters, sigma {args.sigma} (bulk {', '.join(map(str, sizes))}; "
                f"incremental {args.incremental if 'incremental' in phases else 0}); scratch {scratch}")
            t = time.perf_counter()
            data, queries = make_data(total, 500, DIM, args.sigma)
            say(f"data: generated in {time.perf_counter() - t:.1f} s")
        if use_onebase:
            systems.append(Onebase(Path(args.binary), scratch))
            say(f"onebase: serving at {systems[-1].url}")
        if use_chroma:
            systems.append(Chroma(Path(args.chroma_venv), scratch))
            say(f"chroma: serving at 127.0.0.1:{systems[-1].port}")
        vector_systems = systems if vector_phases else []
        if sustained_sizes:
            sustained_phase(systems, data, queries, sustained_sizes, sustained_clients, args.incremental_batch,
                            args.sample_every, 20, results)
        if vector_systems:
            bulk_phase(vector_systems, data, sizes, args, scratch, results)
        if vector_systems and "incremental" in phases and args.incremental:
            incremental_phase(vector_systems, data, queries, base, args.incremental, args.incremental_batch, results)
        for system in [s for s in systems if isinstance(s, Chroma)]:
            system.close()
            systems.remove(system)
        if "text" in phases and use_onebase and args.text_docs:
            text_phase(systems[0], args.text_docs, results)
        for system in systems:
            if isinstance(system, Onebase) and system.retries_503:
                say(f"onebase: {system.retries_503} requests were retried after 503 overloaded")
    except BenchError as e:
        failed = True
        say(f"\nERROR: {e}")
        for system in systems:
            if isinstance(system, Onebase):
                say("onebase.log (last 20 lines):\n" + system.log_tail())
    except Exception as e:  # chromadb's errors and the like: the message, not a traceback
        if type(e).__module__.split(".")[0] != "chromadb":
            raise
        failed = True
        say(f"\nERROR from chromadb: {type(e).__name__}: {e}")
    finally:
        for system in systems:
            try:
                system.close()
            except Exception as e:  # noqa: BLE001
                say(f"{system.name}: close: {e}")
        shutil.rmtree(scratch, ignore_errors=True)
    report(results)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
