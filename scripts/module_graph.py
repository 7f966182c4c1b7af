#!/usr/bin/env python3
"""The import graph of src/: which file uses which, its cycles, and arrows that climb a layer.

Reads every `use crate::...` tree (braces included), `super::`/`self::` paths and inline
`crate::a::b` paths, resolves each to the file that defines the module, and prints:

  * cycles between files (strongly connected components of the file graph);
  * cycles between top-level modules (`knowledge`, `db`, `state`, ...);
  * arrows from a lower layer to a higher one, per LAYERS below.

Exits 1 when it finds any of the three, so `make test` can run it. `--dot` prints the module
graph in Graphviz form instead. Standard library only: no parser crate to build, and the
tree's `use` syntax is regular enough (the formatter keeps it so).
"""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

# Layers, lowest first. A module may import its own layer or any layer below it, never above.
# The planes are one layer and may import each other, as long as no cycle forms.
LAYERS = [
    # Foundations: errors, ids and names, configuration, the metrics registry, the retention rules.
    {"error", "request_id", "names", "canonical", "config", "telemetry", "metrics", "retention"},
    # The database (pools, scopes, the embedded cluster, migrations), the filter language and
    # the request shapes (bodies, pagination) every plane shares.
    {"db", "http", "filter"},
    # The embedder and its cache of query vectors.
    {"embed"},
    # Who calls, and the record of what they did.
    {"auth", "audit"},
    # The application's state every service receives.
    {"state"},
    # The jobs machinery (queue, claims, heartbeats); the kinds' work lives in the planes.
    {"jobs"},
    # The planes, a service per plane. One plane may call another's service, without cycles.
    {"knowledge", "memory", "runs", "cache", "ops", "tenancy", "embeddings"},
    # The front doors (handlers, the spec, middleware) and the composition root.
    {"api", "openapi", "observe", "startup", "lib", "main"},
]

USE_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M | re.S)
INLINE_RE = re.compile(r"\b(crate|super|onebase)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(path: Path, src: Path) -> tuple:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use_tree(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix: str, s: str):
        depth, start, items = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:i])
                start = i + 1
        items.append(s[start:])
        for item in filter(None, items):
            brace = item.find("{")
            if brace >= 0:
                walk(prefix + item[:brace], item[brace + 1 : item.rfind("}")])
            else:
                out.append(prefix + re.sub(r"\bas\b.*$", "", item.replace("as", " as ")).strip())

    walk("", tree)
    return out


def resolve(path: list, here: tuple, modules: set) -> tuple | None:
    """The module a path names (the longest prefix that is a file), or None for outside crates."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if head in ("crate", "onebase"):
        base = ()
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base = here
    else:
        return None
    full = base + tuple(rest)
    for n in range(len(full), 0, -1):
        if full[:n] in modules:
            return full[:n]
    return None


def graph(src: Path) -> dict:
    files = {module_of(p, src): p for p in src.rglob("*.rs")}
    modules = set(files)
    edges = defaultdict(set)
    for here, path in files.items():
        text = strip_comments(path.read_text())
        # A file's own child modules hold `super::` paths that name the file itself.
        paths = []
        for m in USE_RE.finditer(text):
            paths.extend(expand_use_tree(m.group(1)))
        for m in INLINE_RE.finditer(text):
            paths.append(m.group(1) + m.group(2))
        for p in paths:
            segs = [s for s in p.split("::") if s]
            # `super::` inside a `mod tests {}` of a file means the file; count it as itself.
            target = resolve(segs, here, modules)
            if target is not None and target != here:
                # A submodule using its parent's items is the parent's own business, not an
                # arrow between files (a `mod.rs` re-exports its children).
                edges[here].add(target)
    return files, edges


def top(mod: tuple) -> str:
    return mod[0] if mod else "lib"


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise SystemExit(f"module_graph: top-level module `{name}` is in no layer; add it to LAYERS")


def sccs(nodes, edges) -> list:
    """Tarjan's algorithm; returns the components with more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def name(mod: tuple) -> str:
    return "::".join(mod) or "crate"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    ap.add_argument("--dot", action="store_true", help="print the top-level module graph for Graphviz")
    args = ap.parse_args()
    src = Path(args.src)
    files, edges = graph(src)

    # A parent and its own children are one unit: `mod.rs` declares and re-exports them, and a
    # child reaching its parent's items through `super::` is not a dependency between layers.
    def related(a, b):
        return a[: len(b)] == b or b[: len(a)] == a

    file_edges = {a: {b for b in bs if not related(a, b)} for a, bs in edges.items()}
    top_edges = defaultdict(set)
    for a, bs in file_edges.items():
        for b in bs:
            if top(a) != top(b):
                top_edges[top(a)].add(top(b))

    if args.dot:
        print("digraph onebase {")
        for a in sorted(top_edges):
            for b in sorted(top_edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0

    file_cycles = sccs(files, file_edges)
    top_cycles = sccs({top(m) for m in files}, top_edges)
    upward = sorted(
        (name(a), name(b))
        for a, bs in file_edges.items()
        for b in bs
        if layer_of(top(b)) > layer_of(top(a))
    )
    n_file = sum(len(bs) for bs in file_edges.values())
    n_top = sum(len(bs) for bs in top_edges.values())
    print(f"{len(files)} files, {n_file} arrows between files, {n_top} between top-level modules")
    print(f"{len(file_cycles)} file cycles, {len(top_cycles)} module cycles, {len(upward)} upward arrows")
    for comp in file_cycles:
        print("  file cycle:", " <-> ".join(name(m) for m in comp))
    for comp in top_cycles:
        print("  module cycle:", " <-> ".join(comp))
        for a in comp:
            for b in sorted(top_edges[a] & set(comp)):
                via = sorted(
                    f"{name(x)} -> {name(y)}"
                    for x, ys in file_edges.items()
                    if top(x) == a
                    for y in ys
                    if top(y) == b
                )
                print(f"    {a} -> {b}: " + ", ".join(via))
    for a, b in upward:
        print(f"  upward: {a} -> {b}")
    return 1 if file_cycles or top_cycles or upward else 0


if __name__ == "__main__":
    sys.exit(main())
