"""Long-term memory and the context call (issue 12's benchmark; prints figures, asserts nothing).

1. Memory search for one user, p50/p99, while the table holds only the 10 benchmark users'
   memories, and again after SQL copies those memories to ~10,000 other users (~1,000,000 rows):
   a user's search reads that user's rows (index on user_id, then an exact scan), so it should
   not slow down as other users' memories grow.
2. The context call (last messages + the user's memories + a collection's chunks, one snapshot,
   the query embedded once) against the sum of its three parts called one after another.
Every query text is new (a counter in it), so neither side is helped by the query cache.

    make bench-memories   (or, from the repository root: python -m bench.memories --others 9990)

The server is the release binary on a fresh embedded cluster (bench.harness's launcher).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .harness import BINARY, TOOLS, BenchError, Onebase, pct, run_parallel, say, scratch_dir, table

FOODS = ["vegetarian meals", "spicy ramen", "sushi", "gluten-free bread", "dark chocolate", "oat milk lattes",
         "grilled fish", "lentil soup", "mango sorbet", "black coffee"]
PLACES = ["Lisbon", "Osaka", "Toronto", "Nairobi", "Lyon", "Austin", "Tallinn", "Cusco", "Hanoi", "Perth"]
HOBBIES = ["trail running", "chess", "pottery", "birdwatching", "salsa dancing", "sailing", "knitting",
           "rock climbing", "jazz piano", "astronomy"]


def facts(user: int, n: int) -> list[str]:
    """n distinct facts about one user."""
    out = []
    for i in range(n):
        kind = i % 3
        a, b = (i * 7 + user) % 10, (i * 3 + user * 5) % 10
        if kind == 0:
            out.append(f"The user enjoys {FOODS[a]} and dislikes {FOODS[b]} (note {i}).")
        elif kind == 1:
            out.append(f"The user visited {PLACES[a]} in year {2000 + i} and wants to see {PLACES[b]}.")
        else:
            out.append(f"On weekends the user does {HOBBIES[a]}, and is learning {HOBBIES[b]} (note {i}).")
    return out


def timed_calls(ob: Onebase, calls: int, make) -> list[float]:
    lat = []
    for i in range(calls):
        method, path, body = make(i)
        t = time.perf_counter()
        ob.call(method, path, body)
        lat.append(time.perf_counter() - t)
    return lat


def row(name: str, lat: list[float]) -> list[str]:
    return [name, str(len(lat)), f"{pct(lat, 0.5):.2f}", f"{pct(lat, 0.99):.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10, help="users whose memories are written through the API")
    ap.add_argument("--per-user", type=int, default=100, help="memories per user")
    ap.add_argument("--others", type=int, default=9990, help="other users the memories are copied to by SQL")
    ap.add_argument("--calls", type=int, default=200, help="searches per case")
    ap.add_argument("--clients", type=int, default=8, help="clients writing the memories")
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR") or str(TOOLS))
    args = ap.parse_args()
    binary, tools = Path(args.binary), Path(args.tools).resolve()
    # Near-identical facts only are merged: the benchmark wants its memories kept apart.
    os.environ.setdefault("ONEBASE_MEMORY_DEDUPE_THRESHOLD", "0.995")
    scratch = scratch_dir("bench-memories-")
    ob = None
    say(f"machine: {os.cpu_count()} cores; client and server share them (and with anything else running)")
    try:
        ob = Onebase(binary, scratch, tools)
        # 1. The users' memories, through the API (each embedded, deduplicated against its scope).
        start = time.perf_counter()
        work = [(u, text) for u in range(args.users) for text in facts(u, args.per_user)]

        def add(item):
            u, text = item
            ob.call("POST", "/v1/memories", {"content": text, "user_id": f"user-{u}", "metadata": {"n": len(text)}})

        run_parallel(work, args.clients, add)
        write_s = time.perf_counter() - start
        total = int(ob.psql("SELECT count(*) FROM memories;").strip())
        say(f"memories: {total} written through the API in {write_s:.1f} s ({total / write_s:.0f}/s, {args.clients} clients)")

        def search(i: int):
            return ("POST", "/v1/memories/search",
                    {"query": f"what food does the user like, question {i}", "user_id": f"user-{i % args.users}", "k": 10})

        small = timed_calls(ob, args.calls, search)
        # 2. The same memories for ~10,000 other users, by SQL (vectors copied: the scan cost is
        # the same whatever the vectors hold).
        t = time.perf_counter()
        ob.psql(f"""
INSERT INTO memories (tenant_id, user_id, content, content_hash, metadata, embedding)
SELECT m.tenant_id, 'other-' || g, m.content, m.content_hash, m.metadata, m.embedding
FROM generate_series(1, {args.others}) g CROSS JOIN (SELECT * FROM memories WHERE user_id = 'user-0') m;
VACUUM ANALYZE memories;""")
        total_big = int(ob.psql("SELECT count(*) FROM memories;").strip())
        users_big = int(ob.psql("SELECT count(DISTINCT user_id) FROM memories;").strip())
        say(f"memories: {total_big} of {users_big} users after the SQL copy ({time.perf_counter() - t:.1f} s)")
        big = timed_calls(ob, args.calls, lambda i: search(i + args.calls))
        table(["memory search (k=10, one user's 100 memories)", "calls", "p50 ms", "p99 ms"], [
            row(f"table of {total} memories, {args.users} users", small),
            row(f"table of {total_big} memories, {users_big} users", big),
        ])

        # 3. The context call against its three parts.
        ob.call("POST", "/v1/collections", {"name": "policies"})
        policies = [f"Policy {i}: " + s for i, s in enumerate([
            "Refunds for damaged goods are issued within 14 days of the claim.",
            "Standard shipping takes 3 to 5 business days within the country.",
            "Gift cards cannot be exchanged for cash.",
            "Returns are accepted within 30 days with the receipt.",
            "Express delivery is free for orders over 100 euros.",
            "Warranty claims need the serial number of the product.",
        ] * 4)]
        ob.call("POST", "/v1/collections/policies/documents", {"documents": [{"text": t} for t in policies]})
        ob.call("POST", "/v1/conversations", {"id": "bench-chat", "user_id": "user-0"})
        ob.call("POST", "/v1/conversations/bench-chat/messages",
                {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Message {i} about an order."}
                              for i in range(50)]})

        def context(i: int):
            return ("POST", "/v1/conversations/bench-chat/context",
                    {"query": f"can I get a refund for a broken blender, turn {i}", "last_messages": 20,
                     "memories": {"k": 5}, "collections": {"names": ["policies"], "k": 3}})

        one = timed_calls(ob, args.calls, context)
        parts = {"messages": [], "memories": [], "collection": [], "sum": []}
        for i in range(args.calls):
            q = f"can I get a refund for a broken blender, part {i}"
            calls = {
                "messages": ("GET", "/v1/conversations/bench-chat/messages?limit=20", None),
                "memories": ("POST", "/v1/memories/search", {"query": q, "user_id": "user-0", "k": 5}),
                "collection": ("POST", "/v1/collections/policies/search", {"query": q, "k": 3}),
            }
            total_ms = 0.0
            for name, (m, p, b) in calls.items():
                t = time.perf_counter()
                ob.call(m, p, b)
                ms = time.perf_counter() - t
                parts[name].append(ms)
                total_ms += ms
            parts["sum"].append(total_ms)
        table(["context (last 20 messages, 5 memories, 3 chunks)", "calls", "p50 ms", "p99 ms"], [
            row("POST /v1/conversations/{id}/context", one),
            row("  GET .../messages?limit=20", parts["messages"]),
            row("  POST /v1/memories/search", parts["memories"]),
            row("  POST /v1/collections/policies/search", parts["collection"]),
            row("  the three, one after another", parts["sum"]),
        ])
        say(f"context p50 / p50 of the three in a row: {pct(one, 0.5) / pct(parts['sum'], 0.5):.2f}")
    except BenchError as e:
        say(f"\nERROR: {e}")
        if ob is not None:
            say("onebase.log (last 20 lines):\n" + ob.log_tail())
        sys.exit(1)
    finally:
        if ob is not None:
            ob.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
