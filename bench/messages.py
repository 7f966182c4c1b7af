"""Conversations and messages benchmark: onebase alone, on loopback.

Prints figures; asserts nothing. Run with `make bench-messages` (MEMORY_HISTORY=100000,
MEMORY_OTHERS=200000 by default), which builds the release binary and runs
`$(TOOLS)/venv/bin/python -m bench.messages --history $(MEMORY_HISTORY) --others $(MEMORY_OTHERS)
--tools $(TOOLS) $(ARGS)` from the repository root. Standard library only: any Python 3.11+ runs
it. The server is the release binary (`target/release/onebase serve`) on a fresh embedded cluster
in a temporary directory under /tmp (removed at the end), started by bench.harness: a tenant
`bench` and an owner key made with a random admin key. `--only` picks phases (append, list,
search), run in that order. Message texts are English chat turns of 20 to 60 words (a support
conversation: questions and answers from templates with varied slots, deterministic per seed).

1. append: POST /v1/conversations/{id}/messages with --clients (8) concurrent clients for
   --duration seconds (20) per case, each case on fresh conversations: embedding off
   ("embed_messages": false) and on (true); one message per POST, each client on its own
   conversation ("8 conversations") or all clients on ONE conversation (appends to a conversation
   serialize on its row lock); with embedding on also batches of 10 messages per POST. messages/s,
   POSTs/s, p50/p99 per POST. 16 POSTs of warm-up per case first, untimed. Afterwards each case's
   conversations are checked with psql: seq 1..n without gaps, message_count = last_seq = n,
   vectors present exactly when embedding is on (a mismatch is printed as ANOMALY).
2. list: a conversation of --history messages (100,000) written with psql (INSERT ... SELECT
   generate_series, the cluster's superuser over its unix socket), then GET
   /v1/conversations/{id}/messages, one client, --list-calls (200) calls per case: the last 50
   (limit=50), a page in the middle (after=history/2&limit=50) and before=1000&limit=50. Each
   answer is checked (50 rows, the expected seqs, has_more).
3. search: a conversation of --search-messages (2,000) embedded messages of user `search-user`,
   written through the API (batches of 100 per POST, timed for information), then, one client,
   --search-calls (200) calls per case: POST /v1/conversations/{id}/messages/search and POST
   /v1/messages/search {user_id: search-user}, {"query", "k": 10}, each with distinct new queries
   (the query is embedded: the embedder's time is included) and with queries repeated after one
   untimed call (the server's query cache holds their vectors: HTTP and the database only). Measured
   before and after --others (200,000) messages of --other-users (1,000) other users are written
   with psql (copies of the search conversation's texts and real vectors, one conversation per
   user) and VACUUM ANALYZE, to show that one user's search does not slow down as other users'
   data grows. The plan of the user-scoped query (EXPLAIN ANALYZE through psql, as the superuser
   with the tenant condition that row-level security adds) is shown for each state.
   `--search-modes vector,text,hybrid` times each mode (default vector only).

The client and the server share the machine: figures include the client's own CPU (shown as
"client CPU", in cores) and whatever else runs there ("machine busy", from /proc/stat). The
server's CPU is measured from /proc (onebase, which runs the embedder, and its PostgreSQL: the
postmaster of postmaster.pid and its backends), so "other" is what the rest of the machine used;
the machine's load with the server idle is sampled at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time

from .harness import (
    BINARY, TOOLS, BenchError, CpuMeter, Onebase, binary_and_tools, cpu_note, fmt, latency_row, pct,
    run_against_onebase, run_load, say, scratch_dir, table,
)


# ---------------------------------------------------------------------------------------------
# Chat text: a support conversation's turns, 20 to 60 words, from templates with varied slots.

SLOTS = {
    "order": lambda r: f"#{r.randint(100000, 999999)}",
    "product": lambda r: r.choice(["wireless headphones", "standing desk", "coffee grinder", "running shoes",
                                   "laptop sleeve", "air purifier", "mechanical keyboard", "travel backpack",
                                   "smart thermostat", "espresso machine", "winter jacket", "phone charger",
                                   "office chair", "water bottle", "bike helmet", "tablet stand"]),
    "city": lambda r: r.choice(["Lisbon", "Denver", "Osaka", "Toronto", "Berlin", "Nairobi", "Melbourne",
                                "Austin", "Lyon", "Krakow", "Seattle", "Porto", "Dublin", "Monterrey"]),
    "day": lambda r: r.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
    "device": lambda r: r.choice(["Android phone", "iPhone", "iPad", "Windows laptop", "Chromebook", "MacBook"]),
    "defect": lambda r: r.choice(["cracked case", "loose cable", "dead battery", "scratched screen",
                                  "missing screw", "broken zipper", "faulty switch"]),
    "year": lambda r: str(r.randint(2019, 2025)),
    "n": lambda r: str(r.randint(2, 9)),
    "amount": lambda r: f"${r.randint(9, 480)}.{r.randint(0, 99):02d}",
    "plan": lambda r: r.choice(["starter", "team", "business", "enterprise"]),
    "people": lambda r: str(r.randint(3, 60)),
}

USER_SENTENCES = (
    "my order {order} still shows as processing even though I paid for it on {day}.",
    "can you tell me when the {product} will be back in stock?",
    "I tried to reset my password but the email never arrived, and I already checked the spam folder.",
    "the {product} I received has a {defect}, so I would like a replacement or a refund.",
    "I need to change the delivery address to {city} before the parcel ships.",
    "is there a way to export all my invoices from {year} as a single file?",
    "our team of {people} people wants to move to the {plan} plan, so how is the billing prorated?",
    "the app keeps logging me out every few minutes on my {device}.",
    "what are your opening hours in {city} during the holidays?",
    "I was charged twice for the same subscription this month.",
    "the tracking page for order {order} has not changed since {day}.",
    "could you send the {product} to my office in {city} instead of my home?",
    "I would like to cancel the {plan} plan at the end of this billing cycle.",
    "does the {product} come with a warranty, and how long does it last?",
    "the discount code from your newsletter does not work at checkout.",
    "I ordered the {product} in the wrong size and want to exchange it.",
)
USER_OPENERS = ("Hi, ", "Hello again. ", "Quick question: ", "Thanks for the help earlier. ", "", "",
                "Sorry to bother you, but ", "Good morning, ")

ASSISTANT_SENTENCES = (
    "Thanks for reaching out, I can help with that.",
    "I checked order {order} and it left our warehouse in {city} on {day}; the carrier expects to deliver it within {n} business days.",
    "The {product} should be back in stock in about {n} weeks, and I can notify you by email as soon as it is available.",
    "I have issued a refund of {amount} to your original payment method; it usually shows on your statement within five to seven days.",
    "To fix the logout problem on your {device}, please update the app to the latest version and clear its cache.",
    "Prorated billing means you only pay for the remaining days of the current cycle after you switch to the {plan} plan.",
    "I have updated the delivery address to {city}, and you will get a confirmation email shortly.",
    "You can export invoices under Settings, then Billing, then Download all, and choose {year} as the range.",
    "Is there anything else I can help you with today?",
    "Let me know if the problem comes back and I will escalate it to our technical team.",
    "For security reasons I cannot see your password, but I have sent a new reset link that is valid for {n} hours.",
    "I am sorry about the {defect}; a prepaid return label is attached, and the replacement ships as soon as the carrier scans the parcel.",
    "The duplicate charge of {amount} was a pending authorization, and it will drop off within {n} days.",
    "The warranty on the {product} lasts two years and covers manufacturing defects but not accidental damage.",
    "Our store in {city} is open from nine to six on weekdays and closes early on {day} during the holidays.",
    "I applied the newsletter discount manually, so your new total is {amount}.",
)

QUERY_TEMPLATES = (
    "when will my {product} arrive", "refund for a double charge of {amount}", "app logs me out on my {device}",
    "change the delivery address to {city}", "{product} with a {defect}", "export invoices from {year}",
    "upgrade a team of {people} to the {plan} plan", "opening hours of the {city} store",
    "password reset email never arrived", "warranty of the {product}", "order {order} stuck in processing",
    "exchange the {product} for another size", "discount code rejected at checkout",
    "cancel the {plan} plan", "parcel not delivered since {day}",
)


def fill(template: str, rng: random.Random) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SLOTS[m.group(1)](rng), template)


def chat_text(rng: random.Random, role: str) -> str:
    """One chat turn of 20 to 60 words (whole sentences, each template at most once)."""
    target = rng.randint(20, 60)
    order = rng.sample(USER_SENTENCES if role == "user" else ASSISTANT_SENTENCES,
                       len(USER_SENTENCES if role == "user" else ASSISTANT_SENTENCES))
    first = fill(order[0], rng)
    opener = rng.choice(USER_OPENERS) if role == "user" else ""
    if not opener or opener.endswith(". "):
        first = first[0].upper() + first[1:]
    text = opener + first
    for template in order[1:]:
        if len(text.split()) >= target:
            break
        s = fill(template, rng)
        s = s[0].upper() + s[1:]
        if len(text.split()) + len(s.split()) > 60 and len(text.split()) >= 20:
            break
        text += " " + s
    words = text.split()
    if len(words) > 60:  # a long first sentence with a long opener: cut at 60 words
        text = " ".join(words[:60]).rstrip(",;:") + "."
    return text


def queries(n: int, seed: int, exclude: set[str] | None = None) -> list[str]:
    """n distinct search queries (none of `exclude`)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen = set(exclude or ())
    while len(out) < n:
        q = fill(rng.choice(QUERY_TEMPLATES), rng)
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------

def create_conversation(ob: Onebase, cid: str, user: str, embed: bool, title: str) -> dict:
    conv = ob.call("POST", "/v1/conversations", {
        "id": cid, "user_id": user, "title": title, "channel": "web", "assistant": "support-bot",
        "metadata": {"bench": True}, "embed_messages": embed}, ok=(201,))
    if conv.get("embed_messages") is not embed:
        raise BenchError(f"POST /v1/conversations {{id: {cid}, embed_messages: {embed}}} -> 201 but embed_messages "
                         f"{conv.get('embed_messages')!r}")
    return conv


def message(rng: random.Random, turn: int, client: int) -> dict:
    role = "user" if turn % 2 == 0 else "assistant"
    m = {"role": role, "content": chat_text(rng, role), "metadata": {"client": client, "turn": turn, "locale": "en"}}
    if role == "assistant":
        m.update(agent_name="support-bot", token_count=rng.randint(40, 160))
    return m


# ---------------------------------------------------------------------------------------------

def background_load(seconds: float = 3.0) -> dict:
    """The machine's busy cores while this benchmark does nothing (the server idle)."""
    cpu = CpuMeter()
    time.sleep(seconds)
    return cpu.done()


# ---------------------------------------------------------------------------------------------
# 1. Append

def append_phase(ob: Onebase, args, results: dict) -> None:
    cases = [
        ("off", False, "8 conversations", 1),
        ("off", False, "one conversation", 1),
        ("on", True, "8 conversations", 1),
        ("on", True, "one conversation", 1),
        ("on", True, "8 conversations", 10),
        ("on", True, "one conversation", 10),
    ]
    say(f"append: {args.clients} clients, {args.duration:.0f} s per case, {len(cases)} cases")
    for n_case, (emb_name, embed, spread, batch) in enumerate(cases):
        prefix = f"bench-append-{n_case}"
        one = spread.startswith("one")
        convs = [f"{prefix}-0"] if one else [f"{prefix}-{w}" for w in range(args.clients)]
        for i, cid in enumerate(convs):
            create_conversation(ob, cid, f"append-user-{n_case}-{i}", embed, f"Append case {n_case}")
        rngs = [random.Random(1000 * n_case + w) for w in range(args.clients)]
        turns = [0] * args.clients
        anomalies: list[str] = []
        words: list[int] = []

        def post(w: int, i: int, lat: dict, key: str = "POST") -> None:
            cid = convs[0] if one else convs[w]
            msgs = []
            for _ in range(batch):
                msgs.append(message(rngs[w], turns[w], w))
                turns[w] += 1
            words.extend(len(m["content"].split()) for m in msgs)
            body = json.dumps(msgs[0] if batch == 1 else {"messages": msgs}, separators=(",", ":")).encode()
            res, s = ob.timed("POST", f"/v1/conversations/{cid}/messages", body, ok=(201,))
            lat.setdefault(key, []).append(s)
            data = res.get("data") or []
            if len(anomalies) < 5:
                if len(data) != batch:
                    anomalies.append(f"POST {cid}/messages with {batch} message(s) -> {len(data)} in data")
                elif any(d.get("embedded") is not embed for d in data):
                    anomalies.append(f"POST {cid}/messages -> embedded {[d.get('embedded') for d in data]} "
                                     f"(embedding {emb_name})")
                elif [d["seq"] for d in data] != list(range(data[0]["seq"], data[0]["seq"] + batch)):
                    anomalies.append(f"POST {cid}/messages -> seqs {[d['seq'] for d in data]} (not consecutive)")

        run_load(args.clients, lambda w, i, lat: post(w, i, {}), None, 16)  # warm-up, untimed
        words.clear()
        name = f"embedding {emb_name}, {spread}, {batch} msg/POST"
        wall, lat, posts, cpu = run_load(args.clients, post, args.duration, None)
        msgs = posts * batch
        row = latency_row(name, lat.get("POST", []))
        row.update({"embedding": emb_name, "spread": spread, "batch": batch, "conversations": len(convs),
                    "posts": posts, "messages": msgs, "seconds": wall, "msgs_per_s": msgs / wall,
                    "posts_per_s": posts / wall, "cpu": cpu,
                    "words": sum(words) / len(words) if words else float("nan")})
        # The conversations as stored: seq 1..n without gaps, counters, vectors.
        check = ob.psql(f"""
SELECT c.id, c.message_count, c.last_seq, count(m.seq), coalesce(min(m.seq), 0), coalesce(max(m.seq), 0),
       count(m.embedding)
FROM conversations c LEFT JOIN messages m ON m.tenant_id = c.tenant_id AND m.conversation_id = c.id
WHERE c.tenant_id = '{ob.tenant}' AND c.id LIKE '{prefix}-%'
GROUP BY c.id, c.message_count, c.last_seq ORDER BY c.id;""").strip().splitlines()
        stored = 0
        for line in check:
            cid, mc, ls, cnt, mn, mx, emb = line.split("|")
            mc, ls, cnt, mn, mx, emb = map(int, (mc, ls, cnt, mn, mx, emb))
            stored += cnt
            if not (mc == ls == cnt == mx and mn == min(1, cnt)):
                anomalies.append(f"{cid}: message_count {mc}, last_seq {ls}, {cnt} rows, seq {mn}..{mx}")
            if emb != (cnt if embed else 0):
                anomalies.append(f"{cid}: {emb} of {cnt} messages have a vector (embedding {emb_name})")
        row["stored"] = stored
        row["anomalies"] = anomalies
        results["append"].append(row)
        say(f"append: {name}: {msgs} messages ({posts} POSTs) in {wall:.1f} s = {row['msgs_per_s']:.1f} msg/s, "
            f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms per POST, {row['words']:.0f} words/msg; "
            f"{cpu_note(cpu)}; {stored} stored (with the warm-up) in {len(convs)} conversation(s)")
        for a in anomalies:
            say(f"append: ANOMALY {a}")


# ---------------------------------------------------------------------------------------------
# 2. List

def list_phase(ob: Onebase, args, results: dict) -> None:
    t, n, cid = ob.tenant, args.history, "bench-history"
    rng = random.Random(7)
    texts = [chat_text(rng, "user" if i % 2 == 0 else "assistant") for i in range(64)]
    arr = "ARRAY[" + ", ".join(sql_str(x) for x in texts) + "]"
    say(f"list: seeding conversation {cid} with {n} messages with psql")
    start = time.perf_counter()
    ob.psql(f"""
INSERT INTO conversations (tenant_id, id, user_id, title, channel, assistant, embed_messages, message_count, last_seq,
                           created_at, updated_at)
VALUES ('{t}', '{cid}', 'history-user', 'A long support thread', 'web', 'support-bot', false, {n}, {n},
        now() - {n} * interval '30 seconds', now());
""")
    for a in range(1, n + 1, args.seed_batch):
        b = min(n, a + args.seed_batch - 1)
        ob.psql(f"""
INSERT INTO messages (tenant_id, conversation_id, seq, user_id, role, content, agent_name, metadata, token_count, created_at)
SELECT '{t}', '{cid}', g, 'history-user', CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant' END,
       ({arr})[1 + (g * 7919) % {len(texts)}], CASE WHEN g % 2 = 0 THEN 'support-bot' END,
       jsonb_build_object('turn', g, 'locale', 'en'), CASE WHEN g % 2 = 0 THEN 40 + g % 120 END,
       now() - ({n} - g) * interval '30 seconds'
FROM generate_series({a}, {b}) g;
""")
    ob.psql("VACUUM ANALYZE messages; VACUUM ANALYZE conversations;")
    seed_s = time.perf_counter() - start
    size = ob.psql("SELECT pg_size_pretty(pg_total_relation_size('messages'));").strip()
    results["list_seed"] = {"messages": n, "seconds": seed_s, "size": size}
    say(f"list: {n} messages seeded in {seed_s:.1f} s (with VACUUM ANALYZE); messages table {size} with indexes")

    mid = n // 2
    cases = [
        ("last 50 (limit=50)", "limit=50", list(range(n - 49, n + 1)), True),
        (f"middle (after={mid}&limit=50)", f"after={mid}&limit=50", list(range(mid + 1, mid + 51)), True),
        ("before=1000&limit=50", "before=1000&limit=50", list(range(950, 1000)), True),
    ]
    for name, q, want, more in cases:
        path = f"/v1/conversations/{cid}/messages?{q}"
        for _ in range(5):
            ob.call("GET", path)  # warm-up
        lat, anomalies = [], []
        cpu = CpuMeter()
        for _ in range(args.list_calls):
            body, s = ob.timed("GET", path, ok=(200,))
            lat.append(s)
            seqs = [m["seq"] for m in body.get("data", [])]
            if (seqs != want or body.get("has_more") is not more) and len(anomalies) < 3:
                anomalies.append(f"GET {path} -> seqs {seqs[:3]}..{seqs[-3:]} ({len(seqs)}), has_more "
                                 f"{body.get('has_more')!r}; expected {want[0]}..{want[-1]}, has_more {more}")
        size = len(json.dumps(body, separators=(",", ":")))
        row = latency_row(name, lat, extra=f"{len(body.get('data', []))} rows, {size / 1024:.0f} KB")
        row.update(anomalies=anomalies, cpu=cpu.done())
        results["list"].append(row)
        say(f"list: {name}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms ({row['extra']})")
        for a in anomalies:
            say(f"list: ANOMALY {a}")


# ---------------------------------------------------------------------------------------------
# 3. Search

SEARCH_CONV, SEARCH_USER = "bench-search", "search-user"


def plan_of_user_search(ob: Onebase) -> str:
    """The scans of messages in the user-scoped search query as the planner runs it now (EXPLAIN
    ANALYZE as the superuser, with the tenant condition row-level security adds; the query vector
    is one of the user's own), and PostgreSQL's execution time."""
    out = ob.psql(f"""
EXPLAIN (ANALYZE, COSTS OFF)
SELECT m.id, m.content, 1 - (m.embedding <=> q.v) FROM messages m, (SELECT embedding AS v FROM bench_vecs WHERE n = 0) q
WHERE m.tenant_id = '{ob.tenant}' AND m.embedding IS NOT NULL AND m.user_id = '{SEARCH_USER}'
  AND vector_dims(m.embedding) = vector_dims(q.v)
ORDER BY m.embedding <=> q.v LIMIT 10;""")
    scans = []
    for line in out.splitlines():
        m = re.search(r"((?:Parallel )?(?:Seq|Index|Index Only|Bitmap Heap|Bitmap Index) Scan)(?: using (\S+))? on (\S+)", line)
        if not m:
            continue
        target = m.group(2) or m.group(3)
        if m.group(3) == "messages" or target.startswith("messages_"):
            rows = re.search(r"rows=([\d.]+)", line)
            scans.append(f"{m.group(1)} {'using ' + m.group(2) if m.group(2) else 'on ' + m.group(3)}"
                         + (f" ({float(rows.group(1)):.0f} rows)" if rows else ""))
    ex = re.search(r"Execution Time: ([\d.]+) ms", out)
    return ", ".join(scans) + (f"; {float(ex.group(1)):.1f} ms in PostgreSQL" if ex else "")


def search_round(ob: Onebase, args, results: dict, state: str, fresh_seed: int, cached: list[str], used: set[str]) -> None:
    others = int(ob.psql(f"SELECT count(*) FROM messages WHERE tenant_id = '{ob.tenant}' "
                         f"AND user_id <> '{SEARCH_USER}';").strip())
    plan = plan_of_user_search(ob)
    say(f"search ({state}): {others} messages of other users in the tenant; user search plan: {plan}")
    fresh = queries(args.search_calls * 2, fresh_seed, exclude=used)
    used.update(fresh)
    targets = [
        ("conversation", f"/v1/conversations/{SEARCH_CONV}/messages/search", {}),
        ("user (tenant-wide)", "/v1/messages/search", {"user_id": SEARCH_USER}),
    ]
    modes = args.search_modes.split(",")
    for (t_i, (scope, path, extra)), mode in ((t, m) for t in enumerate(targets) for m in modes):
        if mode != "vector":
            extra = dict(extra, mode=mode)
            scope = f"{scope}, {mode}"
        # New queries are new to the model in every mode (a mode after the first gets its own).
        first = fresh[t_i * args.search_calls:(t_i + 1) * args.search_calls] if mode == modes[0] else \
            [f"{q} ({mode})" for q in fresh[t_i * args.search_calls:(t_i + 1) * args.search_calls]]
        for kind, qs in (("new queries", first), ("repeated queries", cached)):
            lat, anomalies, hits = [], [], []
            cpu = CpuMeter()
            for q in qs:
                body, s = ob.timed("POST", path, dict(extra, query=q, k=10), ok=(200,))
                lat.append(s)
                data = body.get("data", [])
                hits.append(len(data))
                wrong = [d["message"].get("conversation_id") for d in data
                         if d["message"].get("conversation_id") != SEARCH_CONV]
                if (wrong or len(data) != 10) and len(anomalies) < 3:
                    anomalies.append(f"POST {path} {json.dumps(dict(extra, query=q, k=10))} -> {len(data)} hits, "
                                     f"from other conversations: {wrong[:3]}")
            row = latency_row(f"{scope}, {kind}", lat, extra=f"{sum(hits) / len(hits):.1f} hits")
            row.update({"state": state, "scope": scope, "kind": kind, "others": others, "plan": plan,
                        "anomalies": anomalies, "cpu": cpu.done()})
            results["search"].append(row)
            say(f"search ({state}): {row['case']}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                f"mean {row['mean_ms']:.2f} ms")
            for a in anomalies:
                say(f"search: ANOMALY {a}")


def search_phase(ob: Onebase, args, results: dict) -> None:
    t = ob.tenant
    create_conversation(ob, SEARCH_CONV, SEARCH_USER, True, "Searchable support history")
    rng = random.Random(99)
    n, batch = args.search_messages, 100
    say(f"search: writing {n} embedded messages to {SEARCH_CONV} through the API, {batch} per POST")
    cpu = CpuMeter()
    start = time.perf_counter()
    lat = []
    for a in range(0, n, batch):
        msgs = [message(rng, i, 0) for i in range(a, min(n, a + batch))]
        res, s = ob.timed("POST", f"/v1/conversations/{SEARCH_CONV}/messages", {"messages": msgs}, ok=(201,))
        lat.append(s)
        data = res.get("data", [])
        if len(data) != len(msgs) or not all(d.get("embedded") is True for d in data):
            raise BenchError(f"POST /v1/conversations/{SEARCH_CONV}/messages {{messages: [{len(msgs)} messages]}} -> 201 "
                             f"with {len(data)} in data, embedded {[d.get('embedded') for d in data][:10]}")
    wall = time.perf_counter() - start
    results["search_write"] = {"messages": n, "seconds": wall, "p50_ms": pct(lat, 0.5), "cpu": cpu.done()}
    say(f"search: {n} messages in {wall:.1f} s = {n / wall:.1f} msg/s (p50 {pct(lat, 0.5):.0f} ms per POST of {batch}); "
        f"{cpu_note(results['search_write']['cpu'])}")
    ob.psql(f"""
VACUUM ANALYZE messages;
CREATE UNLOGGED TABLE bench_vecs AS
  SELECT (row_number() OVER (ORDER BY seq) - 1)::int AS n, role, content, agent_name, embedding
  FROM messages WHERE tenant_id = '{t}' AND conversation_id = '{SEARCH_CONV}' AND embedding IS NOT NULL;
CREATE UNIQUE INDEX ON bench_vecs (n);
ANALYZE bench_vecs;
""")

    cached = queries(args.search_calls, 5)
    used = set(cached)
    # Warm-up, and the repeated queries into the server's query cache.
    for q in cached:
        ob.call("POST", f"/v1/conversations/{SEARCH_CONV}/messages/search", {"query": q, "k": 10})
    for q in cached[:10]:
        ob.call("POST", "/v1/messages/search", {"query": q, "k": 10, "user_id": SEARCH_USER})
    search_round(ob, args, results, "before", 11, cached, used)

    # Other users' messages: copies of the search conversation's texts and vectors.
    users, total = args.other_users, args.others
    say(f"search: seeding {total} messages of {users} other users (one conversation each) with psql, "
        f"copies of the {n} real vectors")
    start = time.perf_counter()
    ob.psql(f"""
INSERT INTO conversations (tenant_id, id, user_id, title, channel, assistant, embed_messages, created_at, updated_at)
SELECT '{t}', 'bench-other-' || u, 'other-user-' || u, 'Support thread', 'web', 'support-bot', true,
       now() - interval '30 days', now()
FROM generate_series(0, {users - 1}) u;
""")
    nv = int(ob.psql("SELECT count(*) FROM bench_vecs;").strip())
    if not nv:
        raise BenchError(f"no embedded messages in {SEARCH_CONV} to copy")
    for a in range(0, total, args.seed_batch):
        b = min(total, a + args.seed_batch) - 1
        ob.psql(f"""
INSERT INTO messages (tenant_id, conversation_id, seq, user_id, role, content, agent_name, metadata, created_at, embedding)
SELECT '{t}', 'bench-other-' || (g % {users}), g / {users} + 1, 'other-user-' || (g % {users}), v.role, v.content,
       v.agent_name, jsonb_build_object('turn', g / {users}), now() - (({total} - g) * interval '10 seconds'), v.embedding
FROM generate_series({a}, {b}) g JOIN bench_vecs v ON v.n = g % {nv};
""")
        say(f"search: other users' messages {b + 1}/{total}, {(b + 1) / (time.perf_counter() - start):.0f} rows/s")
    ob.psql(f"""
UPDATE conversations c SET message_count = x.c, last_seq = x.c
FROM (SELECT conversation_id, count(*) AS c FROM messages WHERE tenant_id = '{t}' AND conversation_id LIKE 'bench-other-%'
      GROUP BY conversation_id) x
WHERE c.tenant_id = '{t}' AND c.id = x.conversation_id;
""")
    insert_s = time.perf_counter() - start
    start = time.perf_counter()
    ob.psql("VACUUM ANALYZE messages; VACUUM ANALYZE conversations;")
    vacuum_s = time.perf_counter() - start
    size = ob.psql("SELECT pg_size_pretty(pg_total_relation_size('messages'));").strip()
    results["others_seed"] = {"messages": total, "users": users, "insert_s": insert_s, "vacuum_s": vacuum_s, "size": size}
    say(f"search: {total} messages in {insert_s:.1f} s, VACUUM ANALYZE {vacuum_s:.1f} s; messages table {size} with indexes")
    for q in cached[:10]:
        ob.call("POST", "/v1/messages/search", {"query": q, "k": 10, "user_id": SEARCH_USER})  # warm-up
    search_round(ob, args, results, "after", 12, cached, used)


# ---------------------------------------------------------------------------------------------

def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def report(results: dict, args) -> dict:
    summary: dict = {}
    print()
    bg = results.get("background")
    if bg:
        print(f"Machine: {os.cpu_count()} cores; busy {fmt(bg.get('machine_busy_cores'), '.2f')} cores with the server "
              f"idle for 3 s at the start ({cpu_note(bg)}); client and server share the machine.\n")
        summary["background_busy_cores"] = round(bg.get("machine_busy_cores", float("nan")), 2)
    if results["append"]:
        print(f"Appends: POST /v1/conversations/{{id}}/messages, {args.clients} clients, {args.duration:.0f} s per case "
              f"(latency per POST)")
        table(["case", "POSTs", "messages", "msg/s", "POST/s", "p50 ms", "p99 ms", "max ms", "words/msg",
               "onebase", "postgres", "client", "other", "machine busy"],
              [[r["case"], str(r["posts"]), str(r["messages"]), fmt(r["msgs_per_s"], ".1f"), fmt(r["posts_per_s"], ".1f"),
                fmt(r["p50_ms"], ".1f"), fmt(r["p99_ms"], ".1f"), fmt(r["max_ms"], ".1f"), fmt(r["words"], ".0f"),
                fmt(r["cpu"].get("onebase_cores"), ".2f"), fmt(r["cpu"].get("postgres_cores"), ".2f"),
                fmt(r["cpu"]["client_cores"], ".2f"), fmt(r["cpu"].get("other_cores"), ".2f"),
                fmt(r["cpu"].get("machine_busy_cores"), ".2f")]
               for r in results["append"]])
        print("(CPU in cores over the case: onebase = the server process with the embedder, postgres = its cluster, "
              "client = this script, other = the rest of the machine)\n")
        for r in results["append"]:
            key = f"append_{r['embedding']}_{'one' if r['spread'].startswith('one') else 'spread'}_b{r['batch']}"
            summary.update({key + "_msgs_per_s": round(r["msgs_per_s"], 1), key + "_p50_ms": round(r["p50_ms"], 1),
                            key + "_p99_ms": round(r["p99_ms"], 1)})
            for a in r["anomalies"]:
                print(f"ANOMALY ({r['case']}): {a}")
    if results["list"]:
        s = results.get("list_seed", {})
        print(f"GET /v1/conversations/{{id}}/messages on a conversation of {s.get('messages', '?')} messages "
              f"(seeded with psql in {fmt(s.get('seconds'), '.1f')} s; messages table {s.get('size', '?')}), one client")
        table(["case", "calls", "p50 ms", "p99 ms", "mean ms", "max ms", "answer", "other CPU"],
              [[r["case"], str(r["calls"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"), fmt(r["mean_ms"], ".2f"),
                fmt(r["max_ms"], ".2f"), r["extra"], fmt(r["cpu"].get("other_cores"), ".2f")] for r in results["list"]])
        for r in results["list"]:
            key = "list_" + slug(r["case"].split(" (")[0].split("&")[0].split("=")[0])
            summary.update({key + "_p50_ms": round(r["p50_ms"], 2), key + "_p99_ms": round(r["p99_ms"], 2)})
            for a in r["anomalies"]:
                print(f"ANOMALY ({r['case']}): {a}")
    if results.get("search_write"):
        w = results["search_write"]
        print(f"Search corpus: {w['messages']} embedded messages written through the API in batches of 100: "
              f"{w['seconds']:.1f} s = {w['messages'] / w['seconds']:.1f} msg/s ({cpu_note(w['cpu'])})")
    if results.get("others_seed"):
        o = results["others_seed"]
        print(f"Other users: {o['messages']} messages of {o['users']} users with real vectors, psql INSERT ... SELECT "
              f"{o['insert_s']:.1f} s, VACUUM ANALYZE {o['vacuum_s']:.1f} s; messages table {o['size']}")
    if results["search"]:
        print(f"\nMessage search (k=10, one client, {args.search_calls} calls per case; user: {SEARCH_USER} with "
              f"{args.search_messages} embedded messages; 'new queries' include embedding the query, 'repeated' hit "
              f"the query cache; other CPU = cores the rest of the machine used meanwhile)")
        table(["case", "other users' msgs", "calls", "p50 ms", "p99 ms", "mean ms", "max ms", "hits", "other CPU"],
              [[f"{r['state']}: {r['case']}", str(r["others"]), str(r["calls"]), fmt(r["p50_ms"], ".2f"),
                fmt(r["p99_ms"], ".2f"), fmt(r["mean_ms"], ".2f"), fmt(r["max_ms"], ".2f"), r["extra"],
                fmt(r["cpu"].get("other_cores"), ".2f")] for r in results["search"]])
        before = {r["case"]: r for r in results["search"] if r["state"] == "before"}
        after = {r["case"]: r for r in results["search"] if r["state"] == "after"}
        if before and after:
            print("Before vs after the other users' rows (p50)")
            table(["case", "before p50 ms", "after p50 ms", "after/before"],
                  [[c, fmt(before[c]["p50_ms"], ".2f"), fmt(after[c]["p50_ms"], ".2f"),
                    fmt(after[c]["p50_ms"] / before[c]["p50_ms"], ".2f")] for c in before if c in after])
            print(f"User search plan before: {next(iter(before.values()))['plan']}")
            print(f"User search plan after:  {next(iter(after.values()))['plan']}\n")
        for r in results["search"]:
            key = f"search_{r['state']}_{slug(r['scope'].replace(' (tenant-wide)', ''))}_{slug(r['kind'].split()[0])}"
            summary.update({key + "_p50_ms": round(r["p50_ms"], 2), key + "_p99_ms": round(r["p99_ms"], 2)})
            for a in r["anomalies"]:
                print(f"ANOMALY ({r['state']}: {r['case']}): {a}")
    print(json.dumps(summary, sort_keys=True), flush=True)
    return summary


PHASES = ("append", "list", "search")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the append phase")
    ap.add_argument("--duration", type=float, default=20, help="seconds of each append case")
    ap.add_argument("--history", type=int, default=100_000, help="messages of the conversation of the list phase (psql)")
    ap.add_argument("--list-calls", type=int, default=200, help="GET calls per list case")
    ap.add_argument("--search-messages", type=int, default=2000, help="embedded messages of the searched user (API)")
    ap.add_argument("--search-calls", type=int, default=200, help="search calls per case")
    ap.add_argument("--search-modes", default="vector",
                    help="comma list of the search modes timed (vector, text, hybrid)")
    ap.add_argument("--others", type=int, default=200_000, help="other users' messages added with psql (with vectors)")
    ap.add_argument("--other-users", type=int, default=1000, help="how many other users (one conversation each)")
    ap.add_argument("--seed-batch", type=int, default=100_000, help="rows per seeding INSERT")
    ap.add_argument("--only", default=",".join(PHASES), help="comma list of " + ", ".join(PHASES))
    ap.add_argument("--binary", default=str(BINARY))
    ap.add_argument("--tools", default=os.environ.get("ONEBASE_TOOLS_DIR") or str(TOOLS),
                    help="the tools directory (psql is <tools>/pg/bin/psql)")
    args = ap.parse_args()
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    if phases - set(PHASES):
        ap.error(f"--only: unknown phase(s) {', '.join(sorted(phases - set(PHASES)))}")
    if args.history < 1000 or args.search_messages < 1 or args.other_users < 1 or args.clients < 1:
        ap.error("--history at least 1000 (before=1000 is measured); --search-messages, --other-users, --clients at least 1")
    binary, tools = binary_and_tools(args.binary, args.tools)

    results: dict = {"append": [], "list": [], "search": []}
    scratch = scratch_dir("bench-memory-")
    say(f"machine: {os.cpu_count()} cores; client and server share them (and with anything else running)")

    def phases_of(ob: Onebase) -> None:
        ob.measure_cpu()
        results["background"] = background_load()
        say(f"machine: server idle for 3 s: {cpu_note(results['background'])}")
        for name, step in (("append", append_phase), ("list", list_phase), ("search", search_phase)):
            if name in phases:
                step(ob, args, results)

    failed = not run_against_onebase(binary, scratch, tools, phases_of)
    report(results, args)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
