"""The Python test suite: real clients driving a real onebase server.

One server per session: the debug binary that `cargo test` built (or $ONEBASE_BIN), on a fresh
embedded PostgreSQL in target/tmp, on a free loopback port, with an admin key. A tenant ("conformance")
and an owner key for it are created through the API, so tests can act as the admin or as an owner.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180


@dataclasses.dataclass
class Server:
    url: str
    admin_key: str
    tenant_id: str
    owner_key: str
    log: Path

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"onebase exited with {proc.returncode} before it was ready:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"onebase was not ready within {READY_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


def start_server(scratch: Path, admin_key: str, jwt_secret: str,
                 extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    """Starts onebase on the embedded cluster in `scratch/pgdata` (created on first start);
    returns the process, its URL and its log, once it is ready."""
    binary = Path(os.environ.get("ONEBASE_BIN", ROOT / "target" / "debug" / "onebase"))
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: build it first (`cargo test --no-run`, which `make test` runs)")
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        ONEBASE_BIND=f"127.0.0.1:{port}",
        ONEBASE_DATA_DIR=str(scratch / "pgdata"),
        ONEBASE_PG_PORT=str(_free_port()),
        ONEBASE_PG_SETTINGS="shared_buffers=128MB",
        ONEBASE_ADMIN_KEY=admin_key,
        ONEBASE_JWT_SECRET=jwt_secret,
        ONEBASE_LOG_FORMAT="json",
        ONEBASE_WORKERS="2",
        ONEBASE_TOOLS_DIR=os.environ.get("ONEBASE_TOOLS_DIR", str(ROOT / ".onebase")),
        **(extra_env or {}),
    )
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(binary), "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, proc, log)
    except Exception:
        proc.kill()
        raise
    return proc, url, log


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_tenant_owner(url: str, admin_key: str, name: str) -> tuple[str, str]:
    """A new tenant and an owner key for it: (tenant id, key)."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    tenant = requests.post(f"{url}/v1/tenants", json={"name": name}, headers=admin, timeout=10)
    assert tenant.status_code == 201, tenant.text
    tenant_id = tenant.json()["id"]
    key = requests.post(f"{url}/v1/tenants/{tenant_id}/keys", json={"name": "pytest owner", "role": "owner"},
                        headers=admin, timeout=10)
    assert key.status_code == 201, key.text
    return tenant_id, key.json()["key"]


def scratch_dir(name: str) -> Path:
    # Under target/: the embedded Postgres runs as the `postgres` user when we are root, and must
    # be able to reach its data directory (a private mkdtemp under /tmp would not do).
    path = ROOT / "target" / "tmp" / f"pytest-{os.getpid()}-{name}"
    shutil.rmtree(path, ignore_errors=True)
    return path


@pytest.fixture(scope="session")
def server() -> Server:
    scratch = scratch_dir("server")
    admin_key = "pytest-admin-" + secrets.token_hex(24)
    proc, url, log = start_server(scratch, admin_key, secrets.token_hex(32))
    try:
        tenant_id, owner_key = create_tenant_owner(url, admin_key, "conformance")
        yield Server(url=url, admin_key=admin_key, tenant_id=tenant_id, owner_key=owner_key, log=log)
    finally:
        stop_server(proc)
    # The database goes; the server log stays in target/tmp for a look after a failure.
    shutil.rmtree(scratch / "pgdata", ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Prints the lines tests recorded as `summary` properties (e.g. Schemathesis' totals)."""
    lines = [
        f"{report.nodeid}: {value}"
        for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
        for name, value in report.user_properties
        if name == "summary"
    ]
    if lines:
        terminalreporter.section("summaries")
        for line in lines:
            terminalreporter.write_line(line)
