# The two commands of the README. Both run the bootstrap first (quick when already done).
CARGO ?= cargo
TOOLS ?= $(or $(ONEBASE_TOOLS_DIR),.onebase)
ONEBASE_BIND ?= 127.0.0.1:8080
export ONEBASE_BIND

.PHONY: run test test-lint test-rust test-python test-hub bootstrap bootstrap-tests build bench bench-search bench-ingest bench-runs bench-messages bench-memories bench-ops bench-retrieval clean-data

run: bootstrap
	$(CARGO) build --release
	./target/release/onebase serve

# The formatting and lint checks, the Rust suite, then the Python suite (real clients: Schemathesis
# against /openapi.json) driving the debug binary that the Rust suite built.
test: test-lint test-rust test-python

# rustfmt.toml's format, clippy's default lints on every target (tests and benches too), and the
# import graph of src/: no cycles, no arrow up a layer (scripts/module_graph.py, standard library).
test-lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings
	python3 scripts/module_graph.py

test-rust: bootstrap-tests
	$(CARGO) test

# `cargo test --no-run` (a no-op after test-rust) rather than `cargo build`: the binary built with
# the test features is the one already there, while `cargo build` would compile ~100 crates again.
test-python: bootstrap-tests
	$(CARGO) test --no-run --quiet
	cd tests/python && ONEBASE_BIN=$(CURDIR)/target/debug/onebase $(abspath $(TOOLS))/testenv/bin/python -m pytest

# The optional `hub` feature (fastembed model download): compiles it and checks that a failed
# download is a clear startup error. Not part of `make test`; no hub is reachable here.
test-hub: bootstrap
	$(CARGO) test --features hub --lib embed::

bootstrap:
	@scripts/bootstrap

bootstrap-tests:
	@scripts/bootstrap --tests

build:
	$(CARGO) build --release

# The embedding benchmarks (release build; prints figures, asserts nothing).
bench: bootstrap
	$(CARGO) bench

# The bench-* targets run the programs of bench/ (one module each, sharing bench/harness.py) from the
# repository root as `python -m bench.NAME`.

# Search against a ChromaDB server from PyPI, side by side (prints figures; bench/search.py).
# N vectors (default 100000); ChromaDB goes into a scratch venv beside the tools. Text at a
# million chunks of real text: make bench-search ARGS="--text-corpus cisi --text-docs 1000000 --text-only".
N ?= 100000
CHROMA_VENV ?= $(abspath $(TOOLS))/bench-chroma
bench-search: bootstrap
	$(CARGO) build --release
	test -x $(CHROMA_VENV)/bin/chroma || { python3 -m venv $(CHROMA_VENV) && $(CHROMA_VENV)/bin/pip install --quiet chromadb==1.5.9; }
	$(CHROMA_VENV)/bin/python -m bench.search --n $(N) --chroma-venv $(CHROMA_VENV) $(ARGS)

# Ingest against the same ChromaDB (prints figures; bench/ingest.py): bulk import vs add,
# incremental batches into the loaded collection, text ingest vs the embedder alone.
ARGS ?=
bench-ingest: bootstrap
	$(CARGO) build --release
	test -x $(CHROMA_VENV)/bin/chroma || { python3 -m venv $(CHROMA_VENV) && $(CHROMA_VENV)/bin/pip install --quiet chromadb==1.5.9; }
	$(CHROMA_VENV)/bin/python -m bench.ingest --n $(N) --chroma-venv $(CHROMA_VENV) $(ARGS)

# Runs, LLM calls, usage and the tool-result cache (prints figures; bench/runs.py, standard
# library only): writes with 8 clients, GET /v1/runs and /v1/usage over RUNS_SEED runs and as many LLM
# calls seeded with SQL, cache PUT/GET. E.g. ARGS="--duration 30 --only seed,list".
RUNS_SEED ?= 1000000
bench-runs: bootstrap
	$(CARGO) build --release
	$(abspath $(TOOLS))/venv/bin/python -m bench.runs --runs-seed $(RUNS_SEED) --tools $(abspath $(TOOLS)) $(ARGS)

# Conversations and messages (prints figures; bench/messages.py, standard library only): appends
# with 8 clients (embedding off and on, 8 conversations or one, 1 or 10 messages per POST), pages of a
# conversation of MEMORY_HISTORY messages seeded with SQL, message search before and after
# MEMORY_OTHERS other users' messages seeded with SQL. E.g. ARGS="--duration 10 --only append,search".
MEMORY_HISTORY ?= 100000
MEMORY_OTHERS ?= 200000
bench-messages: bootstrap
	$(CARGO) build --release
	$(abspath $(TOOLS))/venv/bin/python -m bench.messages --history $(MEMORY_HISTORY) --others $(MEMORY_OTHERS) --tools $(abspath $(TOOLS)) $(ARGS)

# Long-term memory and the context call (prints figures; bench/memories.py): one user's
# memory search over 1k and ~1M memories (10 and 10,000 users), the context call against its parts.
bench-memories: bootstrap
	$(CARGO) build --release
	$(abspath $(TOOLS))/venv/bin/python -m bench.memories --tools $(abspath $(TOOLS)) $(ARGS)

# Retrieval quality on the CISI test collection (bench/retrieval.py; prints figures, asserts
# nothing): loads its 1,460 documents through the API into a fresh server, then prints one table of
# nDCG@10 and recall@10 (and p50/mean ms per search) over the 76 judged queries for mode vector, text
# and hybrid (default fusion, RRF k 60, weighted 0.7/0.3 and 0.5/0.5), group_by document, beside
# references computed outside onebase (rank_bm25 BM25, exact cosine with the served model, their
# fusions) and issue 22's reference figures. Its packages (bench/requirements-retrieval.txt) go into
# a scratch venv beside the tools, made anew when that file changes. The data is read from
# CISI_DIR (default ../shared/data/ir/cisi); e.g. ARGS="--json /tmp/retrieval.json --chunking 128:16".
RETRIEVAL_VENV ?= $(abspath $(TOOLS))/bench-retrieval
CISI_DIR ?= ../shared/data/ir/cisi
bench-retrieval: bootstrap
	$(CARGO) build --release
	cmp -s bench/requirements-retrieval.txt $(RETRIEVAL_VENV)/requirements.txt || { rm -rf $(RETRIEVAL_VENV) && python3 -m venv $(RETRIEVAL_VENV) && $(RETRIEVAL_VENV)/bin/pip install --quiet -r bench/requirements-retrieval.txt && cp bench/requirements-retrieval.txt $(RETRIEVAL_VENV)/requirements.txt; }
	$(RETRIEVAL_VENV)/bin/python -m bench.retrieval --data-dir $(CISI_DIR) --tools $(abspath $(TOOLS)) $(ARGS)

# Removes the embedded cluster's data (asks first).
clean-data:
	@read -p "Delete ./data (all embedded database data)? [y/N] " a; [ "$$a" = y ] && rm -rf ./data || true

# Backup and restore of N vectors, and kill -9 of Postgres to /ready 200 (bench/ops.py).
bench-ops: bootstrap
	$(CARGO) build --release
	$(abspath $(TOOLS))/venv/bin/python -m bench.ops --n $(N) $(ARGS)
