"""An import survives the server's death: onebase is killed with SIGKILL while an import job is
loading, and after a restart another worker takes the job over (its heartbeat went stale) and
finishes it from its last checkpoint, with no record twice and none missing."""

from __future__ import annotations

import json
import math
import random
import secrets
import shutil
import signal
import time

import requests

from conftest import create_tenant_owner, scratch_dir, start_server, stop_server

N, DIM = 50_000, 64
FAST_TAKEOVER = {"ONEBASE_JOB_STALE_SECS": "2"}


def vector(i: int) -> list[float]:
    """A pseudo-random unit vector (uniform in the cube, normalized): no two alike."""
    rng = random.Random(i)
    v = [rng.uniform(-1.0, 1.0) for _ in range(DIM)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [round(x / norm, 6) for x in v]


def body() -> bytes:
    return b"".join((json.dumps({"id": f"r{i}", "embedding": vector(i), "metadata": {"tag": i % 100}}) + "\n").encode()
                    for i in range(N))


def test_sigkill_during_an_import_resumes_without_duplicates_or_gaps() -> None:
    scratch = scratch_dir("import-resume")
    admin_key = "pytest-admin-" + secrets.token_hex(24)
    jwt = secrets.token_hex(32)
    proc, url, _ = start_server(scratch, admin_key, jwt, FAST_TAKEOVER)
    try:
        _, key = create_tenant_owner(url, admin_key, "imports")
        headers = {"Authorization": f"Bearer {key}"}
        created = requests.post(f"{url}/v1/collections", json={"name": "big", "embedding": {"dimension": DIM},
                                                               "index": {"type": "hnsw"}}, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        res = requests.post(f"{url}/v1/collections/big/import", data=body(),
                            headers={**headers, "Content-Type": "application/x-ndjson"}, timeout=300)
        assert res.status_code == 202, res.text
        job_id = res.json()["id"]
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it mid-load (or while it builds the index)
            job = requests.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            seen.append((job["state"], job["progress"]["done"], job["progress"]["phase"]))
            if job["state"] == "running" and (0 < job["progress"]["done"] < N or job["progress"]["phase"] == "index"):
                break
            assert job["state"] in ("queued", "running"), job
            time.sleep(0.02)
        else:
            raise AssertionError(f"the import never got under way: {seen[-5:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = seen[-1]

        proc, url, _ = start_server(scratch, admin_key, jwt, FAST_TAKEOVER)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = requests.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            if job["state"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert job["state"] == "completed", job
        assert job["attempts"] >= 2, f"a second worker resumed it: {job}"
        assert job["progress"]["done"] == N, job
        collection = requests.get(f"{url}/v1/collections/big", headers=headers, timeout=30).json()
        assert collection["document_count"] == N, (killed_at, collection)
        assert collection["chunk_count"] == N, (killed_at, collection)
        ids, cursor = set(), None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = requests.get(f"{url}/v1/collections/big/documents", params=params, headers=headers, timeout=30).json()
            ids.update(d["id"] for d in page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert ids == {f"r{i}" for i in range(N)}, f"killed at {killed_at}: {len(ids)} distinct ids"
        for i in (0, 12_345, N - 1):
            # Exact (the filter matches 500 rows): the stored vector is the one sent.
            exact = requests.post(f"{url}/v1/collections/big/search", json={
                "vector": vector(i), "k": 1, "include": [], "filter": {"tag": i % 100}, "explain": True},
                headers=headers, timeout=30).json()
            assert exact["explain"]["plan"] == "exact" and exact["hits"][0]["document_id"] == f"r{i}", exact
            # Through the rebuilt index.
            ann = requests.post(f"{url}/v1/collections/big/search", json={
                "vector": vector(i), "k": 1, "include": [], "ef_search": 400, "explain": True},
                headers=headers, timeout=30).json()
            assert "embedding_idx" in ann["explain"]["postgres_plan"], ann["explain"]
            assert ann["hits"][0]["document_id"] == f"r{i}", ann
    finally:
        stop_server(proc)
        shutil.rmtree(scratch / "pgdata", ignore_errors=True)
