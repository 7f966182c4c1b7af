#!/usr/bin/env python3
"""Operations figures (issue 13), printed, asserting nothing:

1. Backup and restore of N 384-d vectors with their documents in an HNSW-indexed collection:
   `onebase backup` while the server serves (size, seconds), `onebase restore` into a new data
   directory (seconds; pg_restore rebuilds the vector index).
2. Time from `kill -9` of the embedded postmaster to `/ready` 200, over several kills.

The release binary on a fresh embedded cluster (scripts/bench_runs.py's harness); the vectors go
in through the import endpoint (binary COPY, one index build).

    make bench-ops N=1000000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runs import ROOT, Conn, Onebase, say  # noqa: E402


def vectors_ndjson(path: Path, n: int, dim: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, n, 10_000):
            block = rng.standard_normal((min(10_000, n - start), dim), dtype=np.float32)
            for i, v in enumerate(block, start):
                f.write(json.dumps({"id": f"d{i}", "embedding": [round(float(x), 5) for x in v],
                                    "text": f"document {i}", "metadata": {"tag": i % 100}}) + "\n")


def wait_job(ob: Onebase, job_id: str, timeout: float = 7200) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ob.call("GET", f"/v1/jobs/{job_id}")
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise RuntimeError(f"job {job_id} did not finish")


def ready(port: int) -> bool:
    try:
        c = Conn("127.0.0.1", port, timeout=2)
        c.request("GET", "/ready")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "onebase"))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR", str(ROOT / ".onebase")))
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ops-", dir=os.environ.get("BENCH_SCRATCH")))
    scratch.chmod(0o755)  # the embedded Postgres may run as another OS user
    ob = Onebase(Path(args.binary), scratch, Path(args.tools))
    env = dict(os.environ, ONEBASE_DATA_DIR=str(ob.pg_data), ONEBASE_PG_PORT=str(ob.pg_port),
               ONEBASE_TOOLS_DIR=args.tools, ONEBASE_LOG_FORMAT="json", RUST_LOG="warn")
    try:
        ob.call("POST", "/v1/collections", {"name": "vecs", "embedding": {"dimension": args.dim},
                                            "index": {"type": "hnsw"}})
        body = scratch / "vecs.ndjson"
        t = time.perf_counter()
        vectors_ndjson(body, args.n, args.dim)
        say(f"wrote {args.n} records ({body.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        with open(body, "rb") as f:
            c = Conn("127.0.0.1", ob.port, timeout=7200)
            c.request("POST", "/v1/collections/vecs/import?on_error=abort", body=f,
                      headers=dict(ob.headers, **{"Content-Type": "application/x-ndjson",
                                                  "Content-Length": str(body.stat().st_size)}))
            res = c.getresponse()
            raw = res.read()
            c.close()
        if res.status not in (200, 201, 202):
            raise RuntimeError(f"import: {res.status} {raw[:500]!r}")
        job = wait_job(ob, json.loads(raw)["id"])
        say(f"import: {job['state']} in {time.perf_counter() - t:.0f} s")
        body.unlink()
        db_bytes = int(ob.psql("SELECT pg_database_size(current_database())").strip())

        dump = scratch / "vecs.dump"
        t = time.perf_counter()
        out = subprocess.run([args.binary, "backup", "--out", str(dump)], env=env, capture_output=True, text=True)
        backup_s = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        t = time.perf_counter()
        out = subprocess.run([args.binary, "restore", str(dump)], capture_output=True, text=True,
                             env=dict(env, ONEBASE_DATA_DIR=str(scratch / "restored"), ONEBASE_PG_PORT=str(ob.pg_port + 1)))
        restore_s = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(out.stderr)

        back = []
        for _ in range(args.kills):
            pid = int((ob.pg_data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
            t = time.perf_counter()
            time.sleep(0.05)
            while not ready(ob.port):
                time.sleep(0.02)
            back.append(time.perf_counter() - t)
            time.sleep(1)

        print(f"\n## Operations, N = {args.n} vectors of {args.dim} dimensions (HNSW), cores = {os.cpu_count()}\n")
        print("| what | figure |\n|---|---|")
        print(f"| database size | {db_bytes / 2**20:.0f} MiB |")
        print(f"| `onebase backup` (pg_dump -Fc, while serving) | {backup_s:.1f} s, {dump.stat().st_size / 2**20:.0f} MiB |")
        print(f"| `onebase restore` into a new data directory (index rebuilt) | {restore_s:.1f} s |")
        print(f"| kill -9 of postgres -> /ready 200 ({args.kills} kills) | "
              + ", ".join(f"{b:.2f} s" for b in back) + " |")
    finally:
        ob.close()


if __name__ == "__main__":
    main()
