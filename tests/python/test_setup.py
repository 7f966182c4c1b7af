"""The bootstrap's venvs hold exactly their locks, and nothing of torch or CUDA."""

from __future__ import annotations

import os
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


def locked(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def test_runtime_venv_holds_exactly_its_lock_and_no_torch() -> None:
    have = installed(TOOLS / "venv")

    assert not [n for n in have if FORBIDDEN.match(n)], "torch/CUDA packages in the venv"
    extra = {n: v for n, v in have.items() if n not in {"pip", "setuptools", "wheel"}}
    assert extra == locked(ROOT / "scripts" / "requirements.txt")


def test_test_venv_holds_exactly_its_lock() -> None:
    have = installed(TOOLS / "testenv")

    extra = {n: v for n, v in have.items() if n not in {"pip", "setuptools", "wheel"}}
    assert extra == locked(ROOT / "tests" / "python" / "requirements.txt")
