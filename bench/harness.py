"""What the benchmarks share: the onebase server launcher, the ChromaDB launcher, and the helpers
they time, run clients and print with.

Standard library only, so that the benchmarks that need nothing else run in .onebase/venv (no
httpx there). chromadb is imported by the ChromaDB launcher and httpx by Onebase.httpx_client, the
client of the two benchmarks that run beside ChromaDB (whose own client is httpx) in its venv.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "target" / "release" / "onebase"  # every benchmark's --binary default
TOOLS = ROOT / ".onebase"  # scripts/bootstrap's tools directory (pg/bin/psql, the models)


class BenchError(Exception):
    pass


class ServerError(BenchError):
    """A request answered with an unexpected status (the request's body, if any, is shown)."""

    def __init__(self, method: str, path: str, body, status: int, text: str):
        self.status = status
        self.text = text
        req = "" if body is None else " " + (body if isinstance(body, str) else
                                              (body.decode(errors="replace") if isinstance(body, bytes) else json.dumps(body)))[:1500]
        super().__init__(f"{method} {path}{req}\n  -> HTTP {status}: {text[:2000]}")


def say(*parts) -> None:
    print(*parts, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_dir(prefix: str, parent: str | None = None) -> Path:
    """A fresh temporary directory (under /tmp, or `parent`) that the embedded PostgreSQL can enter
    even when it runs as another OS user than the benchmark (onebase started as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------------------
# Figures and tables

def pct(latencies: list[float], q: float) -> float:
    """The q-quantile of latencies in seconds, in milliseconds (nan if none)."""
    lat = sorted(latencies)
    return 1000 * lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")


def latency_row(name: str, lat: list[float], rows: list[int] | None = None, extra: str = "") -> dict:
    """One case's figures: calls, p50, p99, mean and max in ms, rows per answer (if counted)."""
    return {"case": name, "calls": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "mean_ms": 1000 * sum(lat) / len(lat) if lat else float("nan"), "max_ms": 1000 * max(lat) if lat else float("nan"),
            "rows": sum(rows) / len(rows) if rows else float("nan"), "extra": extra}


def fmt(v, spec: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, columns padded (the first left-aligned, the others right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else [len(h) for h in header]
    line = lambda cells: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()


# ---------------------------------------------------------------------------------------------
# CPU: the client's, the server's and the machine's, over a phase

# The server's processes whose CPU time is measured: {"onebase": pid, "postgres": postmaster pid}
# (Onebase.measure_cpu fills it; CpuMeter shows the client and the machine only while it is empty).
SERVER_PIDS: dict[str, int] = {}


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of each SERVER_PIDS process with its descendants (exited ones counted
    through their parent's cutime/cstime), from /proc; postgres's tree is not counted in onebase's."""
    procs: dict[int, tuple[int, int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                f_ = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(d)] = (int(f_[1]), sum(int(x) for x in f_[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in sorted(SERVER_PIDS, key=lambda n: n != "postgres"):  # postgres first
        total, todo = 0, [SERVER_PIDS[name]]
        while todo:
            pid = todo.pop()
            if pid in seen or pid not in procs:
                continue
            seen.add(pid)
            total += procs[pid][1]
            todo.extend(children.get(pid, []))
        out[name] = total / tick
    return out


class CpuMeter:
    """Client CPU (this process, all threads), the server's (onebase and its PostgreSQL, from
    /proc) and machine busy time (/proc/stat) over a phase; "other" is the rest of the machine."""

    def __init__(self):
        self.t = time.perf_counter()
        self.proc = time.process_time()
        self.server = server_cpu_seconds() if SERVER_PIDS else {}
        self.stat = self._stat()

    @staticmethod
    def _stat() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            return sum(v) - idle, sum(v)
        except (OSError, ValueError):
            return None

    def done(self) -> dict:
        wall = time.perf_counter() - self.t
        out = {"client_cores": (time.process_time() - self.proc) / wall if wall else float("nan")}
        if self.server and wall:
            end = server_cpu_seconds()
            for name, v in self.server.items():
                out[f"{name}_cores"] = (end.get(name, v) - v) / wall
        end = self._stat()
        if self.stat and end and end[1] > self.stat[1]:
            out["machine_busy_cores"] = (end[0] - self.stat[0]) / (end[1] - self.stat[1]) * (os.cpu_count() or 1)
            if "onebase_cores" in out:
                out["other_cores"] = max(0.0, out["machine_busy_cores"] - out["client_cores"] - out["onebase_cores"]
                                         - out.get("postgres_cores", 0.0))
        return out


def cpu_note(c: dict) -> str:
    s = f"client CPU {c['client_cores']:.2f} cores"
    if "onebase_cores" in c:
        s += f", onebase {c['onebase_cores']:.2f}, postgres {c.get('postgres_cores', float('nan')):.2f}"
    if "machine_busy_cores" in c:
        s += f", machine busy {c['machine_busy_cores']:.2f} of {os.cpu_count()} cores"
    if "other_cores" in c:
        s += f" (other processes {c['other_cores']:.2f})"
    return s


# ---------------------------------------------------------------------------------------------
# Concurrent clients

def run_parallel(items: list, threads: int, fn) -> tuple[float, list]:
    """fn(item) for every item on `threads` threads taking items in order from one queue; returns
    the wall time and the results in item order. The first exception is re-raised."""
    results: list = [None] * len(items)
    order = iter(range(len(items)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker():
        while not errors:
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                errors.append(e)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, results


def run_load(clients: int, work, duration: float | None, count: int | None) -> tuple[float, dict[str, list[float]], int, dict]:
    """`clients` threads calling work(thread, i, latencies) until a deadline (`duration` seconds) or
    `count` calls in all; work appends its requests' latencies to latencies[request type]. Returns
    wall seconds, latencies per request type, work items done and the CPU figures (CpuMeter)."""
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {}
    done = [0]
    errors: list[BaseException] = []
    stop = threading.Event()
    counter = iter(range(count)) if count else None

    def worker(w: int):
        local: dict[str, list[float]] = {}
        i = 0
        try:
            while not stop.is_set() and not errors:
                if counter is not None:
                    with lock:
                        if next(counter, None) is None:
                            break
                elif time.perf_counter() >= deadline:
                    break
                work(w, i, local)
                i += 1
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            stop.set()
        with lock:
            for k, v in local.items():
                latencies.setdefault(k, []).extend(v)
            done[0] += i

    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    cpu = CpuMeter()
    start = time.perf_counter()
    deadline = start + (duration or 0)
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    c = cpu.done()
    if errors:
        raise errors[0]
    return wall, latencies, done[0], c


# ---------------------------------------------------------------------------------------------
# HTTP

class Conn(http.client.HTTPConnection):
    """Keep-alive connection with TCP_NODELAY (also after an automatic reconnect)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def get_status(port: int, path: str, timeout: float = 2) -> int | None:
    """The status of GET http://127.0.0.1:port/path on a fresh connection (None if unreachable)."""
    try:
        c = Conn("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", path)
            return c.getresponse().status
        finally:
            c.close()
    except OSError:
        return None


def wait_http(port: int, path: str, proc: subprocess.Popen, name: str, log: Path, timeout: float = 300) -> None:
    """Waits for GET path to answer below 500; a BenchError (with the log's tail) if `proc` exits
    or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited ({proc.returncode}) during startup; {log} ends with:\n{tail(log)}")
        status = get_status(port, path)
        if status is not None and status < 500:
            return
        time.sleep(0.5)
    raise BenchError(f"http://127.0.0.1:{port}{path} did not answer within {timeout} s; {log} ends with:\n{tail(log)}")


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({e})"


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# The servers

class Onebase:
    """The release server (`onebase serve`) on a free port with a fresh embedded cluster in
    `scratch`/pgdata, its log in `scratch`/onebase.log; once /ready answers, a tenant `bench` and
    an owner key made with a random admin key (self.headers). Requests go through this thread's
    keep-alive connection (request, call, timed); psql reaches the cluster as its superuser.

    `env` adds or overrides server variables, e.g. a second server on the first one's database
    (DATABASE_URL), which then takes the first one's `admin` key and `headers` instead of making a
    tenant of its own."""

    name = "onebase"

    def __init__(self, binary: Path, scratch: Path, tools: Path | None = None, *, env: dict | None = None,
                 log_name: str = "onebase.log", admin: str | None = None, headers: dict | None = None):
        self.scratch = scratch
        self.tools = Path(tools) if tools else TOOLS
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = admin or "bench-admin-" + secrets.token_hex(20)
        self.pg_port = free_port()
        self.pg_data = scratch / "pgdata"
        self.db_name = "onebase"
        server_env = dict(os.environ, ONEBASE_BIND=f"127.0.0.1:{self.port}", ONEBASE_DATA_DIR=str(self.pg_data),
                          ONEBASE_PG_PORT=str(self.pg_port), ONEBASE_ADMIN_KEY=self.admin, ONEBASE_LOG_FORMAT="json",
                          RUST_LOG=os.environ.get("RUST_LOG", "warn"), ONEBASE_TOOLS_DIR=str(self.tools),
                          ONEBASE_DB_NAME=self.db_name)
        server_env.pop("DATABASE_URL", None)
        # psql reaches the cluster over the unix socket in the data directory; a path too long for
        # a socket name makes the server put it elsewhere, so then listen on loopback TCP instead.
        if len(str(self.pg_data)) + len(f"/.s.PGSQL.{self.pg_port}") >= 100:
            server_env["ONEBASE_PG_LISTEN"] = "127.0.0.1"
            self.pg_host = "127.0.0.1"
        else:
            self.pg_host = str(self.pg_data)
        server_env.update(env or {})
        self.log_path = scratch / log_name
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary), "serve"], cwd=ROOT, env=server_env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.local = threading.local()
        self.lock = threading.Lock()
        self.retries_503 = 0
        self.reconnects = 0
        self.headers: dict = {}
        self.tenant: str | None = None
        self._httpx: list = []
        try:
            wait_http(self.port, "/ready", self.proc, "onebase", self.log_path)
            if headers is not None:
                self.headers = dict(headers)
                return
            admin_headers = {"Authorization": f"Bearer {self.admin}"}
            tenant = self.call("POST", "/v1/tenants", {"name": "bench"}, headers=admin_headers)["id"]
            key = self.call("POST", f"/v1/tenants/{tenant}/keys", {"role": "owner"}, headers=admin_headers)["key"]
            self.headers = {"Authorization": f"Bearer {key}"}
            me = self.call("GET", "/v1/auth/me")
            self.tenant = me.get("tenant_id") or tenant
            if self.tenant != tenant:
                raise BenchError(f"/v1/auth/me says tenant {self.tenant}, the tenant made was {tenant}")
        except BaseException:
            self.close()
            raise

    # -- HTTP, standard library --

    def conn(self) -> Conn:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = Conn("127.0.0.1", self.port, timeout=600)
        return c

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, bytes, dict]:
        """One request on this thread's keep-alive connection: (status, body, headers). A 503 is
        retried after its Retry-After (counted); an idle connection the server closed is reopened."""
        data = None
        hdrs = dict(self.headers, **(headers or {}))
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in range(300):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=hdrs)
                res = c.getresponse()
                raw = res.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                # The server closed a kept-alive connection (idle timeout): nothing was processed.
                c.close()
                self.local.conn = None
                with self.lock:
                    self.reconnects += 1
                if attempt >= 2:
                    raise
                continue
            if res.status == 503 and attempt < 299:
                with self.lock:
                    self.retries_503 += 1
                try:
                    time.sleep(min(1.0, float(res.getheader("retry-after") or 0.2)))
                except ValueError:
                    time.sleep(0.2)
                continue
            return res.status, raw, dict(res.getheaders())
        raise BenchError("unreachable")

    def call(self, method: str, path: str, body=None, ok=(200, 201, 204), headers: dict | None = None):
        """request() with a JSON body (or bytes), its JSON answer; a ServerError unless the status is in `ok`."""
        status, raw, _ = self.request(method, path, body, headers)
        if status not in ok:
            raise ServerError(method, path, body, status, raw.decode(errors="replace"))
        return json.loads(raw) if raw else None

    def timed(self, method: str, path: str, body=None, ok=(200, 201, 204)):
        """call() and its latency in seconds."""
        t = time.perf_counter()
        out = self.call(method, path, body, ok)
        return out, time.perf_counter() - t

    def ready(self) -> bool:
        """GET /ready answers 200 (on a fresh connection)."""
        return get_status(self.port, "/ready") == 200

    # -- HTTP, httpx (the benchmarks beside ChromaDB) --

    def httpx_client(self, timeout=120):
        """A new httpx.Client on the server with the owner key and TCP_NODELAY (httpx writes headers
        and body separately, and Nagle's algorithm would hold the body until the server's delayed
        ACK, 40 ms, of the headers); closed by close()."""
        import httpx

        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        client = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)
        with self.lock:
            self._httpx.append(client)
        return client

    def httpx(self):
        """This thread's httpx client (httpx_client(), made on first use)."""
        client = getattr(self.local, "httpx", None)
        if client is None:
            client = self.local.httpx = self.httpx_client()
        return client

    # -- the process and its database --

    def measure_cpu(self) -> None:
        """Makes CpuMeter measure this server: onebase's process and its postmaster's tree."""
        SERVER_PIDS["onebase"] = self.proc.pid
        try:
            SERVER_PIDS["postgres"] = int((self.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError) as e:
            say(f"machine: no postmaster.pid in {self.pg_data} ({e}): PostgreSQL's CPU not measured apart")

    def psql(self, sql: str, quiet: bool = True) -> str:
        """Runs sql with the tools' psql as the cluster's superuser; its unaligned output."""
        psql = self.tools / "pg" / "bin" / "psql"
        cmd = [str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-h", self.pg_host, "-p", str(self.pg_port),
               "-U", "postgres", "-d", self.db_name, "-At"]
        if quiet:
            cmd.append("-q")
        res = subprocess.run(cmd, input=sql, capture_output=True, text=True)
        if res.returncode != 0:
            raise BenchError(f"psql failed ({res.returncode}): {res.stderr.strip()}\nSQL:\n{sql[:3000]}")
        return res.stdout

    def log_tail(self, n: int = 20) -> str:
        return tail(self.log_path, n)

    def close(self) -> None:
        for client in self._httpx:
            client.close()
        stop_process(self.proc, 120)
        self.log.close()


class Chroma:
    """A ChromaDB server (`chroma run` from `venv`, data in `scratch`/chroma, log in
    `scratch`/chroma.log) on a free port, and this thread's chromadb.HttpClient to it."""

    name = "chroma"

    def __init__(self, venv: Path, scratch: Path):
        import chromadb

        self.chromadb = chromadb
        self.port = free_port()
        self.log_path = scratch / "chroma.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(venv / "bin" / "chroma"), "run", "--path", str(scratch / "chroma"), "--host",
                                      "127.0.0.1", "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        self.local = threading.local()
        try:
            wait_http(self.port, "/api/v2/heartbeat", self.proc, "chroma", self.log_path)
        except BaseException:
            self.close()
            raise

    def client(self):
        if not hasattr(self.local, "client"):
            self.local.client = self.chromadb.HttpClient(host="127.0.0.1", port=self.port)
        return self.local.client

    def close(self) -> None:
        stop_process(self.proc, 60)
        self.log.close()


def binary_and_tools(binary: str, tools: str, need_psql: bool = True) -> tuple[Path, Path]:
    """The server binary and the tools directory of the command line, or exit saying what is
    missing."""
    binary_path, tools_path = Path(binary), Path(tools).resolve()
    if not binary_path.is_file():
        sys.exit(f"no onebase binary at {binary_path} (cargo build --release, or --binary)")
    if need_psql and not (tools_path / "pg" / "bin" / "psql").exists():
        sys.exit(f"no psql at {tools_path}/pg/bin/psql (scripts/bootstrap, or --tools)")
    return binary_path, tools_path


def run_against_onebase(binary: Path, scratch: Path, tools: Path | None, phases) -> bool:
    """Starts onebase in `scratch`, runs `phases(ob)`, and always stops it and removes the scratch
    directory. A BenchError is printed with the end of the server's log; retries and reconnects
    are reported. Returns False when a phase failed (the caller still prints what it measured)."""
    ob = None
    try:
        ob = Onebase(binary, scratch, tools)
        say(f"onebase: serving at {ob.url}, tenant {ob.tenant}, scratch {scratch}")
        phases(ob)
        if ob.retries_503 or ob.reconnects:
            say(f"onebase: {ob.retries_503} requests retried after 503, {ob.reconnects} connections reopened")
        return True
    except BenchError as e:
        say(f"\nERROR: {e}")
        if ob is not None:
            say("onebase.log (last 20 lines):\n" + ob.log_tail())
        return False
    finally:
        if ob is not None:
            try:
                ob.close()
            except Exception as e:  # noqa: BLE001
                say(f"onebase: close: {e}")
        shutil.rmtree(scratch, ignore_errors=True)
