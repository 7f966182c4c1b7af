"""Operations figures (issue 13), printed, asserting nothing:

1. Backup and restore of N 384-d vectors with their documents in an HNSW-indexed collection:
   `onebase backup` while the server serves (size, seconds), `onebase restore` into a new data
   directory (seconds; pg_restore rebuilds the vector index).
2. Search QPS at 8 clients (k = 10 by query vector): the server alone on its primary, then a
   second server on the same database with a streaming replica of it (`pg_basebackup -R`) as
   `ONEBASE_READ_DATABASE_URL`, so that its searches read from the replica.
3. Time from `kill -9` of the embedded postmaster to `/ready` 200, over several kills.

The release binary on a fresh embedded cluster (bench.harness's launcher); the vectors go in
through the import endpoint (binary COPY, one index build).

    make bench-ops N=1000000   (or, from the repository root: python -m bench.ops --n 1000000)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from .harness import BINARY, TOOLS, Conn, Onebase, free_port, say, scratch_dir


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


def as_postgres_user():
    """preexec_fn: run as the `postgres` OS user when the bench runs as root (Postgres refuses root)."""
    if os.getuid() != 0:
        return None
    import pwd
    pw = pwd.getpwnam(os.environ.get("ONEBASE_PG_USER", "postgres"))

    def drop() -> None:
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop, pw


def start_replica(ob: Onebase, tools: Path, scratch: Path) -> tuple[subprocess.Popen, str]:
    """A streaming replica of the server's cluster (pg_basebackup -R), on its own port and socket."""
    rep = scratch / "replica"
    out = subprocess.run([str(tools / "pg" / "bin" / "pg_basebackup"), "-h", ob.pg_host, "-p", str(ob.pg_port),
                          "-U", "postgres", "-D", str(rep), "-R", "--wal-method=stream", "--checkpoint=fast"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pg_basebackup: {out.stderr}")
    rep.chmod(0o700)
    user = as_postgres_user()
    if user:
        subprocess.run(["chown", "-R", f"{user[1].pw_uid}:{user[1].pw_gid}", str(rep)], check=True)
    port = free_port()
    log = open(scratch / "replica.log", "wb")
    # The primary's memory and the limits a standby must match (onebase passes them as -c, so
    # they are not in the copied configuration files).
    names = ("shared_buffers", "effective_cache_size", "work_mem", "max_connections", "max_worker_processes",
             "max_parallel_workers", "max_wal_senders", "max_locks_per_transaction", "max_prepared_transactions")
    rows = ob.psql("SELECT name, setting::bigint * (CASE unit WHEN '8kB' THEN 8 ELSE 1 END), "
                   "CASE WHEN unit IN ('8kB', 'kB') THEN 'kB' ELSE '' END FROM pg_settings WHERE name IN ("
                   + ", ".join(f"'{n}'" for n in names) + ")").split()
    settings = [f"{line.split('|')[0]}={line.split('|')[1]}{line.split('|')[2]}" for line in rows]
    proc = subprocess.Popen([str(tools / "pg" / "bin" / "postgres"), "-D", str(rep), "-c", f"port={port}",
                             "-c", f"unix_socket_directories={rep}", "-c", "listen_addresses="]
                            + [a for kv in settings for a in ("-c", kv)],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=user[0] if user else None)
    deadline = time.monotonic() + 600
    while b"ready to accept read-only connections" not in (scratch / "replica.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the replica did not start: " + (scratch / "replica.log").read_text()[-2000:])
        time.sleep(0.2)
    return proc, f"host={rep} port={port} user=postgres dbname={ob.db_name}"


def search_qps(port: int, headers: dict, dim: int, clients: int = 8, seconds: float = 20) -> tuple[float, float]:
    """Searches per second and the median latency (ms) of `clients` closed-loop clients."""
    rng = np.random.default_rng(11)
    bodies = [json.dumps({"vector": [round(float(x), 5) for x in rng.standard_normal(dim)], "k": 10})
              for _ in range(200)]
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        c = Conn("127.0.0.1", port, timeout=60)
        mine = []
        n = i
        while time.monotonic() < stop:
            t = time.perf_counter()
            c.request("POST", "/v1/collections/vecs/search", body=bodies[n % len(bodies)],
                      headers=dict(headers, **{"Content-Type": "application/json"}))
            res = c.getresponse()
            res.read()
            if res.status != 200:
                raise RuntimeError(f"search: {res.status}")
            mine.append(time.perf_counter() - t)
            n += clients
        c.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(latencies) / (time.perf_counter() - t), float(np.median(latencies)) * 1000


def replica_reads(port: int) -> float:
    c = Conn("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    line = next(l for l in text.splitlines() if l.startswith('onebase_db_reads_total{target="replica"}'))
    return float(line.rsplit(" ", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--qps-seconds", type=float, default=20)
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR") or str(TOOLS))
    args = ap.parse_args()
    scratch = scratch_dir("bench-ops-", os.environ.get("BENCH_SCRATCH"))
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

        replica, replica_url = start_replica(ob, Path(args.tools), scratch)
        second = None
        try:
            # A second server on the first one's database, its reads on the replica.
            second = Onebase(Path(args.binary), scratch, Path(args.tools), log_name="onebase2.log", admin=ob.admin,
                             headers=ob.headers, env={
                                 "DATABASE_URL": f"host={ob.pg_host} port={ob.pg_port} user=postgres dbname={ob.db_name}",
                                 "ONEBASE_READ_DATABASE_URL": replica_url, "ONEBASE_PG_PORT": str(ob.pg_port)})
            while not second.ready():
                time.sleep(0.5)
            search_qps(ob.port, ob.headers, args.dim, seconds=3)  # warm the primary's caches
            primary_qps, primary_p50 = search_qps(ob.port, ob.headers, args.dim, seconds=args.qps_seconds)
            search_qps(second.port, ob.headers, args.dim, seconds=3)  # warm the replica's caches
            before = replica_reads(second.port)
            replica_qps, replica_p50 = search_qps(second.port, ob.headers, args.dim, seconds=args.qps_seconds)
            on_replica = replica_reads(second.port) - before
        finally:
            if second is not None:
                second.close()
            replica.terminate()
            replica.wait()

        back = []
        for _ in range(args.kills):
            pid = int((ob.pg_data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
            t = time.perf_counter()
            time.sleep(0.05)
            while not ob.ready():
                time.sleep(0.02)
            back.append(time.perf_counter() - t)
            time.sleep(1)

        print(f"\n## Operations, N = {args.n} vectors of {args.dim} dimensions (HNSW), cores = {os.cpu_count()}\n")
        print("| what | figure |\n|---|---|")
        print(f"| database size | {db_bytes / 2**20:.0f} MiB |")
        print(f"| `onebase backup` (pg_dump -Fc, while serving) | {backup_s:.1f} s, {dump.stat().st_size / 2**20:.0f} MiB |")
        print(f"| `onebase restore` into a new data directory (index rebuilt) | {restore_s:.1f} s |")
        print(f"| search QPS, 8 clients, k = 10, primary alone | {primary_qps:.0f} /s (p50 {primary_p50:.1f} ms) |")
        print(f"| search QPS, 8 clients, k = 10, reads on one replica ({on_replica:.0f} of them there) | "
              f"{replica_qps:.0f} /s (p50 {replica_p50:.1f} ms) |")
        print(f"| kill -9 of postgres -> /ready 200 ({args.kills} kills) | "
              + ", ".join(f"{b:.2f} s" for b in back) + " |")
    finally:
        ob.close()


if __name__ == "__main__":
    main()
