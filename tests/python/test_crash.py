"""A crash mid-write leaves whole documents: the server is killed with SIGKILL while large batches
are being written, and after a restart every document has all of its chunks and vectors, and the
collection's counters match its rows."""

from __future__ import annotations

import secrets
import shutil
import signal
import threading
import time

import requests

from conftest import create_tenant_owner, scratch_dir, start_server, stop_server

SENTENCE = "The quarterly report covers revenue, hiring, office moves and the new security policy. "


def writer(url: str, key: str, worker: int, stop: threading.Event, written: list[int]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    batch = 0
    while not stop.is_set():
        docs = [
            {"id": f"w{worker}-b{batch}-d{i}", "text": SENTENCE * (8 + i % 5), "metadata": {"worker": worker, "batch": batch}}
            for i in range(24)
        ]
        try:
            res = requests.post(f"{url}/v1/collections/crash/documents", json={"documents": docs}, headers=headers, timeout=60)
            if res.status_code == 201:
                written.append(len(docs))
        except requests.RequestException:
            return  # the server is gone
        batch += 1


def test_sigkill_during_writes_leaves_no_partial_document() -> None:
    scratch = scratch_dir("crash")
    admin_key = "pytest-admin-" + secrets.token_hex(24)
    jwt = secrets.token_hex(32)
    proc, url, _ = start_server(scratch, admin_key, jwt)
    _, key = create_tenant_owner(url, admin_key, "crash")
    headers = {"Authorization": f"Bearer {key}"}
    created = requests.post(f"{url}/v1/collections", json={"name": "crash", "chunking": {"max_tokens": 48, "overlap_tokens": 8}},
                            headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    stop, written = threading.Event(), []
    threads = [threading.Thread(target=writer, args=(url, key, w, stop, written)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(written) < 48 and time.monotonic() < deadline:  # some batches are in, more are on the way
        time.sleep(0.1)
    time.sleep(0.7)

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    proc, url, _ = start_server(scratch, admin_key, jwt)
    try:
        documents, cursor = [], None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = requests.get(f"{url}/v1/collections/crash/documents", params=params, headers=headers, timeout=30).json()
            documents += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        partial = []
        for doc in documents:
            chunks = requests.get(f"{url}/v1/collections/crash/documents/{doc['id']}/chunks", headers=headers, timeout=30).json()
            if len(chunks["data"]) != doc["chunk_count"] or doc["chunk_count"] == 0:
                partial.append((doc["id"], doc["chunk_count"], len(chunks["data"])))
        collection = requests.get(f"{url}/v1/collections/crash", headers=headers, timeout=30).json()
    finally:
        stop_server(proc)
        shutil.rmtree(scratch / "pgdata", ignore_errors=True)

    assert sum(written) >= 48, "batches were committed before the kill"
    assert len(documents) >= sum(written), "every acknowledged batch survived"
    assert len(documents) % 24 == 0, f"whole batches only: {len(documents)} documents"
    assert partial == [], f"documents without all their chunks: {partial[:5]}"
    assert collection["document_count"] == len(documents)
    assert collection["chunk_count"] == sum(d["chunk_count"] for d in documents)
