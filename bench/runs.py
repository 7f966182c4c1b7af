"""Runs and tool-result cache benchmark: onebase alone, on loopback.

Prints figures; asserts nothing. Run with `make bench-runs` (RUNS_SEED=1000000 by default), which
builds the release binary and runs `$(TOOLS)/venv/bin/python -m bench.runs --runs-seed
$(RUNS_SEED) --tools $(TOOLS) $(ARGS)` from the repository root. Standard library only: any Python
3.11+ runs it. The server is the release binary (`target/release/onebase serve`) on a fresh
embedded cluster in a temporary directory under /tmp (removed at the end), started by
bench.harness: a tenant `bench` and an owner key made with a random admin key. `--only` picks phases (seed, list, usage,
write, cache), run in that order.

1. seed: --runs-seed runs (1,000,000) and --calls-seed LLM calls (as many) written straight into
   the server's database with psql (the cluster's superuser over its unix socket; INSERT ... SELECT
   generate_series, batches of --seed-batch), for the bench tenant: --actors actors (1,000,
   uniform), statuses completed 80% / failed 8% / cancelled 4% / running 5% / queued 3%, created_at
   uniform over the last 90 days, ids UUIDv7 of their created_at. Calls go to uniformly drawn seeded
   runs (a few minutes after the run's creation), 5 models of 3 providers (weighted toward the cheap
   ones), exact NUMERIC costs. Then VACUUM ANALYZE. Timed, for information only.
2. list: GET /v1/runs (default limit 100), one client, --list-calls (200) calls per case: no filter,
   actor= (a random actor each call), status= (cycling through the 5), since= (1 to 30 days back),
   since+until (a 1-day window 1 to 89 days back), actor+status, successive cursor pages of the
   unfiltered list (pages 2, 3, ...), and page 2 of an actor's list (page-1 cursors fetched untimed).
3. usage: GET /v1/usage?group_by=model|provider|actor|day over all calls and over a 7-day window
   (since/until 30 to 23 days back), one client, --usage-calls (20) calls each.
4. write: "units" with --clients (8) concurrent clients for --duration seconds (60; or --units
   units): POST /v1/runs (status running), 10 x (POST steps, POST llm-calls with that step_id),
   PATCH status completed = 22 requests. units/s, requests/s, p50/p99 per request type. 16 units
   of warm-up first, untimed.
5. cache: --clients clients, --cache-duration seconds (20) each: PUT of distinct keys (~1 KB JSON
   data, 201 created), PUT of the same data again (200, changed=false: no history row), GET hits.

The client and the server share the machine: figures include the client's own CPU (shown as
"client CPU", in cores) and whatever else runs there ("machine busy", from /proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

from .harness import (
    BINARY, TOOLS, BenchError, Onebase, binary_and_tools, cpu_note, fmt, latency_row, pct, run_against_onebase,
    run_load, say, scratch_dir, table,
)

STATUSES = ("completed", "failed", "cancelled", "running", "queued")
# (model, provider, USD per prompt token, USD per completion token); weights in the seed SQL.
MODELS = (
    ("gpt-4o", "openai", "0.0000025", "0.00001"),
    ("gpt-4o-mini", "openai", "0.00000015", "0.0000006"),
    ("claude-sonnet-4", "anthropic", "0.000003", "0.000015"),
    ("claude-haiku-4", "anthropic", "0.0000008", "0.000004"),
    ("gemini-2.5-pro", "google", "0.00000125", "0.00001"),
)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------------------------
# 1. Seed

def seed_phase(ob: Onebase, args, results: dict) -> None:
    t = ob.tenant
    total = time.perf_counter()
    n_runs, n_calls, batch = args.runs_seed, args.calls_seed, args.seed_batch
    say(f"seed: {n_runs} runs ({args.actors} actors, 90 days) and {n_calls} LLM calls into tenant {t} "
        f"with psql, {batch} rows per INSERT")
    start = time.perf_counter()
    for i, a in enumerate(range(0, n_runs, batch)):
        b = min(n_runs, a + batch) - 1
        ob.psql(f"""
SELECT setseed({(i % 997) / 1000.0});
INSERT INTO runs (tenant_id, id, actor, status, request_payload, request_hash, metadata,
                  created_at, started_at, completed_at, updated_at)
SELECT '{t}'::uuid, uuidv7(s.ts - now()), 'actor-' || lpad((s.g % {args.actors})::text, 4, '0'), s.st,
       jsonb_build_object('seed', s.g, 'question', 'What is the status of order ' || s.g || '?',
                          'user', 'user-' || (s.g % 5000), 'channel', 'web'),
       sha256(convert_to('seed-' || s.g, 'UTF8')), '{{}}'::jsonb,
       s.ts,
       CASE WHEN s.st <> 'queued' THEN s.ts + interval '1 second' END,
       CASE WHEN s.st IN ('completed', 'failed', 'cancelled') THEN s.ts + s.dur END,
       CASE WHEN s.st IN ('completed', 'failed', 'cancelled') THEN s.ts + s.dur ELSE s.ts + interval '1 second' END
FROM (SELECT g, now() - random() * interval '90 days' AS ts, interval '1 second' + random() * interval '10 minutes' AS dur,
             CASE WHEN r < 0.80 THEN 'completed' WHEN r < 0.88 THEN 'failed' WHEN r < 0.92 THEN 'cancelled'
                  WHEN r < 0.97 THEN 'running' ELSE 'queued' END AS st
      FROM (SELECT g, random() AS r FROM generate_series({a}, {b}) g) x) s;
""")
        say(f"seed: runs {b + 1}/{n_runs}, {(b + 1) / (time.perf_counter() - start):.0f} rows/s")
    runs_s = time.perf_counter() - start

    start = time.perf_counter()
    if n_calls:
        ob.psql(f"""
DROP TABLE IF EXISTS bench_seed_runs;
CREATE UNLOGGED TABLE bench_seed_runs AS
  SELECT (row_number() OVER (ORDER BY id) - 1)::int AS n, id, actor, created_at
  FROM runs WHERE tenant_id = '{t}' AND request_payload ? 'seed';
CREATE UNIQUE INDEX ON bench_seed_runs (n);
ANALYZE bench_seed_runs;
""")
        seeded = int(ob.psql("SELECT count(*) FROM bench_seed_runs;").strip())
        if not seeded:
            raise BenchError("no seeded runs to attach LLM calls to (run the seed phase with --runs-seed > 0)")
        models = ", ".join(f"({i}, '{m}', '{p}', {pin}::numeric, {pout}::numeric)" for i, (m, p, pin, pout) in enumerate(MODELS))
        for i, a in enumerate(range(0, n_calls, batch)):
            b = min(n_calls, a + batch) - 1
            ob.psql(f"""
SELECT setseed({((i + 500) % 997) / 1000.0});
INSERT INTO llm_calls (tenant_id, id, run_id, actor, model, provider, prompt_tokens, completion_tokens, total_tokens,
                       cost_usd, latency_ms, created_at)
SELECT '{t}'::uuid, uuidv7(s.ts - now()), s.run_id, s.actor, m.model, m.provider, s.pt, s.ct, s.pt + s.ct,
       round(s.pt * m.pin + s.ct * m.pout, 12), s.lat, s.ts
FROM (SELECT x.g, r.id AS run_id, r.actor, least(now(), r.created_at + x.off) AS ts, x.pt, x.ct, x.lat,
             CASE WHEN x.mr < 0.35 THEN 1 WHEN x.mr < 0.60 THEN 0 WHEN x.mr < 0.80 THEN 3 WHEN x.mr < 0.93 THEN 2 ELSE 4 END AS mi
      FROM (SELECT g, floor(random() * {seeded})::int AS rn, random() * interval '5 minutes' AS off,
                   100 + floor(random() * 4000)::bigint AS pt, 20 + floor(random() * 800)::bigint AS ct,
                   200 + floor(random() * 5000)::bigint AS lat, random() AS mr
            FROM generate_series({a}, {b}) g) x
      JOIN bench_seed_runs r ON r.n = x.rn) s
JOIN (VALUES {models}) AS m(i, model, provider, pin, pout) ON m.i = s.mi;
""")
            say(f"seed: LLM calls {b + 1}/{n_calls}, {(b + 1) / (time.perf_counter() - start):.0f} rows/s")
        ob.psql("DROP TABLE bench_seed_runs;")
    calls_s = time.perf_counter() - start

    start = time.perf_counter()
    ob.psql("VACUUM ANALYZE runs;\nVACUUM ANALYZE llm_calls;")
    vacuum_s = time.perf_counter() - start
    counts = ob.psql(f"SELECT (SELECT count(*) FROM runs WHERE tenant_id = '{t}'), "
                     f"(SELECT count(*) FROM llm_calls WHERE tenant_id = '{t}'), "
                     f"pg_size_pretty(pg_total_relation_size('runs')), pg_size_pretty(pg_total_relation_size('llm_calls'));").strip()
    runs, calls, runs_size, calls_size = counts.split("|")
    r = {"runs": int(runs), "calls": int(calls), "runs_s": runs_s, "calls_s": calls_s, "vacuum_s": vacuum_s,
         "runs_size": runs_size, "calls_size": calls_size, "total_s": time.perf_counter() - total}
    results["seed"] = r
    say(f"seed: {runs} runs in {runs_s:.1f} s, {calls} LLM calls in {calls_s:.1f} s, VACUUM ANALYZE {vacuum_s:.1f} s; "
        f"runs {runs_size}, llm_calls {calls_size} (with indexes)")


# ---------------------------------------------------------------------------------------------
# 2. List, 3. Usage (one client, sequential)

def list_phase(ob: Onebase, args, results: dict) -> None:
    rng = random.Random(11)
    n = args.list_calls
    now = datetime.now(timezone.utc)
    actor = lambda: f"actor-{rng.randrange(args.actors):04d}"  # noqa: E731

    def q(**params) -> str:
        return "/v1/runs?" + urllib.parse.urlencode(params) if params else "/v1/runs"

    cases = [
        ("no filter", lambda i: q()),
        ("actor=", lambda i: q(actor=actor())),
        ("status=", lambda i: q(status=STATUSES[i % len(STATUSES)])),
        ("since= (1-30 days back)", lambda i: q(since=rfc3339(now - timedelta(days=rng.uniform(1, 30))))),
        ("since+until (1-day window)", lambda i: (lambda s: q(since=rfc3339(s), until=rfc3339(s + timedelta(days=1))))(
            now - timedelta(days=rng.uniform(2, 90)))),
        ("actor+status", lambda i: q(actor=actor(), status=STATUSES[i % len(STATUSES)])),
    ]
    # Warm-up: a few calls of each, untimed.
    for _, make in cases:
        for i in range(5):
            ob.call("GET", make(i))
    for name, make in cases:
        lat, rows, more = [], [], 0
        for i in range(n):
            body, s = ob.timed("GET", make(i))
            lat.append(s)
            rows.append(len(body["data"]))
            more += body.get("next_cursor") is not None
        results["list"].append(latency_row(name, lat, rows, f"{more}/{n} with next_cursor"))
        say(f"list: {name}: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, {sum(rows) / n:.1f} rows")

    # Successive pages of the unfiltered list: each call follows the previous call's next_cursor.
    body = ob.call("GET", q())
    lat, rows = [], []
    for i in range(n):
        cur = body.get("next_cursor")
        if not cur:
            break
        body, s = ob.timed("GET", q(cursor=cur))
        lat.append(s)
        rows.append(len(body["data"]))
    results["list"].append(latency_row(f"cursor: pages 2..{len(lat) + 1}", lat, rows,
                                       f"{sum(rows) + 100} rows deep at the end"))
    say(f"list: cursor walk: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms over {len(lat)} pages")

    # Page 2 of an actor's list (the page-1 cursors fetched first, untimed).
    cursors = []
    for i in range(n):
        a = actor()
        cur = ob.call("GET", q(actor=a)).get("next_cursor")
        if cur:
            cursors.append((a, cur))
    lat, rows = [], []
    for a, cur in cursors:
        body, s = ob.timed("GET", q(actor=a, cursor=cur))
        lat.append(s)
        rows.append(len(body["data"]))
    if lat:
        results["list"].append(latency_row("actor= cursor (page 2)", lat, rows))
        say(f"list: actor page 2: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms")
    else:
        say("list: actor page 2: no actor has more than one page (too few runs seeded)")


def usage_phase(ob: Onebase, args, results: dict) -> None:
    now = datetime.now(timezone.utc)
    window = {"since": rfc3339(now - timedelta(days=30)), "until": rfc3339(now - timedelta(days=23))}
    for w_name, w in (("all time", {}), ("7 days (30-23 days back)", window)):
        for group in ("model", "provider", "actor", "day"):
            path = "/v1/usage?" + urllib.parse.urlencode(dict(group_by=group, **w))
            body = ob.call("GET", path)  # warm-up
            lat = []
            for _ in range(args.usage_calls):
                body, s = ob.timed("GET", path)
                lat.append(s)
            total = body["total"]
            r = latency_row(f"group_by={group}, {w_name}", lat, [len(body["data"])],
                            f"{total['llm_calls']} calls, ${total['cost_usd']}")
            results["usage"].append(r)
            say(f"usage: {r['case']}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {len(body['data'])} groups, "
                f"{total['llm_calls']} calls")


# 4. Write

def write_phase(ob: Onebase, args, results: dict) -> None:
    rng_lock = threading.Lock()
    seq = iter(range(10**12))

    def unit(w: int, i: int, lat: dict) -> None:
        with rng_lock:
            n = next(seq)
        rng = random.Random(n)
        t0 = time.perf_counter()
        run, s = ob.timed("POST", "/v1/runs", {
            "actor": f"writer-{w}", "status": "running",
            "request_payload": {"question": f"Summarize ticket {n}", "user": f"user-{n % 5000}", "channel": "api",
                                "context": {"ticket": n, "priority": rng.choice(["low", "normal", "high"])}},
            "metadata": {"bench": True, "client": w}}, ok=(201,))
        lat.setdefault("POST /v1/runs", []).append(s)
        rid = run["id"]
        for k in range(10):
            step, s = ob.timed("POST", f"/v1/runs/{rid}/steps", {
                "step_number": k, "node_name": ("plan", "retrieve", "call_tool", "answer")[k % 4], "status": "completed",
                "input_data": {"messages": [{"role": "user", "content": f"step {k} of run {n}: look up the order status"}]},
                "output_data": {"text": "The order shipped yesterday and should arrive on Friday.", "k": k}}, ok=(201,))
            lat.setdefault("POST steps", []).append(s)
            pt, ct = rng.randint(100, 4000), rng.randint(20, 800)
            model, provider, pin, pout = MODELS[rng.randrange(len(MODELS))]
            _, s = ob.timed("POST", f"/v1/runs/{rid}/llm-calls", {
                "step_id": step["id"], "model": model, "provider": provider, "prompt_tokens": pt,
                "completion_tokens": ct, "cost_usd": f"{pt * float(pin) + ct * float(pout):.9f}",
                "latency_ms": rng.randint(200, 5000)}, ok=(201,))
            lat.setdefault("POST llm-calls", []).append(s)
        done, s = ob.timed("PATCH", f"/v1/runs/{rid}", {"status": "completed"}, ok=(200,))
        lat.setdefault("PATCH run", []).append(s)
        if done.get("status") != "completed":
            raise BenchError(f"PATCH /v1/runs/{rid} {{status: completed}} -> 200 but status {done.get('status')!r}")
        lat.setdefault("unit (22 requests)", []).append(time.perf_counter() - t0)

    run_load(args.clients, unit, None, 16)  # warm-up
    say(f"write: {args.clients} clients, " + (f"{args.units} units" if args.units else f"{args.duration:.0f} s"))
    wall, lat, units, cpu = run_load(args.clients, unit, None if args.units else args.duration, args.units or None)
    requests = sum(len(v) for k, v in lat.items() if not k.startswith("unit"))
    r = {"clients": args.clients, "units": units, "seconds": wall, "units_per_s": units / wall,
         "requests": requests, "requests_per_s": requests / wall, "cpu": cpu,
         "types": [latency_row(k, v, []) for k, v in lat.items()]}
    results["write"] = r
    say(f"write: {units} units ({requests} requests) in {wall:.1f} s = {r['units_per_s']:.1f} units/s, "
        f"{r['requests_per_s']:.0f} requests/s; {cpu_note(cpu)}")


# 5. Cache

def cache_doc(key: str) -> dict:
    """~1 KB of JSON: a search tool's result, deterministic per key."""
    rng = random.Random(key)
    words = ("order", "shipping", "delay", "refund", "warehouse", "carrier", "tracking", "customer", "invoice",
             "address", "parcel", "return", "status", "update", "priority", "weekend", "holiday", "route")
    return {"query": f"where is parcel {key}", "tool": "web_search", "fetched_from": "https://search.example.com",
            "results": [{"title": " ".join(rng.choice(words) for _ in range(6)).capitalize(),
                         "url": f"https://example.com/{key}/{j}",
                         "snippet": " ".join(rng.choice(words) for _ in range(18)),
                         "score": round(rng.random(), 4)} for j in range(4)]}


def cache_phase(ob: Onebase, args, results: dict) -> None:
    ns = "bench"
    keys: dict[int, list[tuple[str, bytes]]] = {w: [] for w in range(args.clients)}
    sizes = [len(json.dumps(cache_doc("w0-0"), separators=(",", ":")))]
    anomalies: list[str] = []

    def put_new(w: int, i: int, lat: dict) -> None:
        key = f"w{w}-{i}"
        body = json.dumps({"data": cache_doc(key), "metadata": {"tool": "web_search"}, "ttl_seconds": 86400},
                          separators=(",", ":")).encode()
        res, s = ob.timed("PUT", f"/v1/cache/{ns}/{key}", body, ok=(201,))
        lat.setdefault("PUT new key", []).append(s)
        if not (res.get("created") and res.get("changed")) and len(anomalies) < 5:
            anomalies.append(f"PUT new {key}: created={res.get('created')} changed={res.get('changed')}")
        keys[w].append((key, body))

    def put_same(w: int, i: int, lat: dict) -> None:
        key, body = keys[w][i % len(keys[w])]
        res, s = ob.timed("PUT", f"/v1/cache/{ns}/{key}", body, ok=(200,))
        lat.setdefault("PUT unchanged", []).append(s)
        if (res.get("changed") or res.get("created")) and len(anomalies) < 5:
            anomalies.append(f"PUT unchanged {key}: created={res.get('created')} changed={res.get('changed')} "
                             f"version={res.get('version')}")

    get_rng = [random.Random(w) for w in range(args.clients)]

    def get_hit(w: int, i: int, lat: dict) -> None:
        key, _ = keys[w][get_rng[w].randrange(len(keys[w]))]
        res, s = ob.timed("GET", f"/v1/cache/{ns}/{key}", ok=(200,))
        lat.setdefault("GET hit", []).append(s)
        if res.get("key") != key and len(anomalies) < 5:
            anomalies.append(f"GET {key}: got key {res.get('key')!r}")

    # Warm-up: a few PUTs and GETs of throwaway keys.
    for i in range(20):
        ob.call("PUT", f"/v1/cache/warmup/k{i}", {"data": cache_doc(f"k{i}")})
        ob.call("GET", f"/v1/cache/warmup/k{i}")
    say(f"cache: {args.clients} clients, {args.cache_duration:.0f} s per case, data {sizes[0]} bytes of JSON")
    for name, fn in (("PUT new key", put_new), ("PUT unchanged", put_same), ("GET hit", get_hit)):
        if fn is not put_new and not all(keys.values()):
            raise BenchError("a cache client stored no key in the PUT new key case (--cache-duration too short?)")
        wall, lat, n, cpu = run_load(args.clients, fn, args.cache_duration, None)
        row = latency_row(name, lat[name], [])
        row.update({"requests": n, "seconds": wall, "rps": n / wall, "cpu": cpu})
        results["cache"].append(row)
        say(f"cache: {name}: {n} requests in {wall:.1f} s = {n / wall:.0f} req/s, p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms; {cpu_note(cpu)}")
    hist = ob.psql(f"SELECT count(*) FROM cache_history WHERE tenant_id = '{ob.tenant}' AND namespace = '{ns}';").strip()
    entries = ob.psql(f"SELECT count(*), max(version) FROM cache_entries WHERE tenant_id = '{ob.tenant}' "
                      f"AND namespace = '{ns}';").strip()
    results["cache_check"] = f"{entries.split('|')[0]} entries (max version {entries.split('|')[1]}), {hist} history rows"
    say(f"cache: {results['cache_check']} in namespace {ns} after the run (unchanged PUTs must add none)")
    for a in anomalies:
        say(f"cache: ANOMALY {a}")
    results["cache_anomalies"] = anomalies


# ---------------------------------------------------------------------------------------------

def report(results: dict, args) -> dict:
    summary: dict = {}
    print()
    if results.get("seed"):
        s = results["seed"]
        print(f"Seed (psql, INSERT ... SELECT): {s['runs']} runs in {s['runs_s']:.1f} s, {s['calls']} LLM calls in "
              f"{s['calls_s']:.1f} s, VACUUM ANALYZE {s['vacuum_s']:.1f} s; runs {s['runs_size']}, llm_calls {s['calls_size']}\n")
        summary.update(seed_runs=s["runs"], seed_llm_calls=s["calls"])
    if results["list"]:
        print(f"GET /v1/runs over {results.get('seed', {}).get('runs', '?')} runs (one client, limit 100)")
        table(["case", "calls", "p50 ms", "p99 ms", "mean ms", "max ms", "rows/page", "note"],
              [[r["case"], str(r["calls"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"), fmt(r["mean_ms"], ".2f"),
                fmt(r["max_ms"], ".2f"), fmt(r["rows"], ".1f"), r["extra"]] for r in results["list"]])
        for r in results["list"]:
            key = "list_" + re.sub(r"[^a-z0-9]+", "_", r["case"].split(" (")[0].split(":")[0].lower()).strip("_")
            summary[key + "_p50_ms"] = round(r["p50_ms"], 2)
            summary[key + "_p99_ms"] = round(r["p99_ms"], 2)
    if results["usage"]:
        print(f"GET /v1/usage over {results.get('seed', {}).get('calls', '?')}+ LLM calls (one client)")
        table(["case", "calls", "p50 ms", "p99 ms", "mean ms", "max ms", "groups", "totals"],
              [[r["case"], str(r["calls"]), fmt(r["p50_ms"], ".1f"), fmt(r["p99_ms"], ".1f"), fmt(r["mean_ms"], ".1f"),
                fmt(r["max_ms"], ".1f"), fmt(r["rows"]), r["extra"]] for r in results["usage"]])
        for r in results["usage"]:
            key = "usage_" + r["case"].split(",")[0].split("=")[1] + ("_window" if "days" in r["case"] else "_all")
            summary[key + "_p50_ms"] = round(r["p50_ms"], 1)
            summary[key + "_p99_ms"] = round(r["p99_ms"], 1)
    if results.get("write"):
        w = results["write"]
        print(f"Writes: {w['clients']} clients, unit = POST run + 10 x (POST step, POST llm-call) + PATCH completed: "
              f"{w['units']} units, {w['requests']} requests in {w['seconds']:.1f} s = {w['units_per_s']:.1f} units/s, "
              f"{w['requests_per_s']:.0f} requests/s ({cpu_note(w['cpu'])})")
        table(["request", "count", "p50 ms", "p99 ms", "mean ms", "max ms"],
              [[r["case"], str(r["calls"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"), fmt(r["mean_ms"], ".2f"),
                fmt(r["max_ms"], ".2f")] for r in w["types"]])
        summary.update(write_units_per_s=round(w["units_per_s"], 1), write_requests_per_s=round(w["requests_per_s"]))
        for r in w["types"]:
            key = "write_" + r["case"].split(" (")[0].replace("/v1/", "").replace(" ", "_").replace("-", "_").lower()
            summary[key + "_p50_ms"] = round(r["p50_ms"], 2)
            summary[key + "_p99_ms"] = round(r["p99_ms"], 2)
    if results["cache"]:
        print(f"Cache: {args.clients} clients, {args.cache_duration:.0f} s per case; {results.get('cache_check', '')}")
        table(["case", "requests", "req/s", "p50 ms", "p99 ms", "mean ms", "max ms", "client CPU", "machine busy"],
              [[r["case"], str(r["requests"]), fmt(r["rps"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"),
                fmt(r["mean_ms"], ".2f"), fmt(r["max_ms"], ".2f"), fmt(r["cpu"]["client_cores"], ".2f"),
                fmt(r["cpu"].get("machine_busy_cores"), ".2f")] for r in results["cache"]])
        for r in results["cache"]:
            key = "cache_" + r["case"].lower().replace(" ", "_")
            summary.update({key + "_rps": round(r["rps"]), key + "_p50_ms": round(r["p50_ms"], 2),
                            key + "_p99_ms": round(r["p99_ms"], 2)})
    print(json.dumps(summary, sort_keys=True), flush=True)
    return summary


PHASES = ("seed", "list", "usage", "write", "cache")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs-seed", type=int, default=1_000_000, help="runs written with SQL for the list phase")
    ap.add_argument("--calls-seed", type=int, default=None, help="LLM calls written with SQL (default: --runs-seed)")
    ap.add_argument("--actors", type=int, default=1000, help="distinct actors of the seeded runs (at most 10000)")
    ap.add_argument("--seed-batch", type=int, default=250_000, help="rows per seeding INSERT")
    ap.add_argument("--list-calls", type=int, default=200, help="GET /v1/runs calls per case")
    ap.add_argument("--usage-calls", type=int, default=20, help="GET /v1/usage calls per case")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the write and cache phases")
    ap.add_argument("--duration", type=float, default=60, help="seconds of the write phase")
    ap.add_argument("--units", type=int, default=0, help="a fixed number of write units instead of --duration")
    ap.add_argument("--cache-duration", type=float, default=20, help="seconds of each cache case")
    ap.add_argument("--only", default=",".join(PHASES), help="comma list of " + ", ".join(PHASES))
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR") or str(TOOLS),
                    help="the tools directory (psql is <tools>/pg/bin/psql)")
    args = ap.parse_args()
    if args.calls_seed is None:
        args.calls_seed = args.runs_seed
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    if phases - set(PHASES):
        ap.error(f"--only: unknown phase(s) {', '.join(sorted(phases - set(PHASES)))}")
    if not 1 <= args.actors <= 10000:
        ap.error("--actors: 1 to 10000")
    binary, tools = binary_and_tools(args.binary, args.tools, need_psql="seed" in phases)

    results: dict = {"list": [], "usage": [], "cache": []}
    scratch = scratch_dir("bench-runs-")
    say(f"machine: {os.cpu_count()} cores; client and server share them (and with anything else running)")

    steps = [("seed", seed_phase), ("list", list_phase), ("usage", usage_phase), ("write", write_phase),
             ("cache", cache_phase)]
    if not (args.runs_seed or args.calls_seed):
        phases.discard("seed")

    def phases_of(ob: Onebase) -> None:
        for name, step in steps:
            if name in phases:
                step(ob, args, results)

    failed = not run_against_onebase(binary, scratch, tools, phases_of)
    report(results, args)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
