"""onebase's benchmark programs: each prints figures and asserts nothing.

Run from the repository root as modules (the Makefile's bench-* targets do):

    python -m bench.search     search beside a ChromaDB server (make bench-search)
    python -m bench.ingest     bulk, incremental and text ingest beside ChromaDB (make bench-ingest)
    python -m bench.runs       runs, LLM calls, usage and the tool-result cache (make bench-runs)
    python -m bench.messages   conversations and messages (make bench-messages)
    python -m bench.memories   long-term memory and the context call (make bench-memories)
    python -m bench.ops        backup, restore, a read replica, kill -9 of Postgres (make bench-ops)
    python -m bench.retrieval  nDCG@10 and recall@10 on CISI beside BM25 and vector references (make bench-retrieval)

bench.harness holds what they share: the onebase and ChromaDB launchers and the helpers for
timing and printing. It uses the standard library only, so runs, messages and memories run in
.onebase/venv, which has no httpx (ops also needs numpy, which that venv has); search and ingest run
in the ChromaDB venv (httpx, numpy, chromadb), retrieval in its own (bench/requirements-retrieval.txt:
rank_bm25, numpy, onnxruntime, tokenizers).
"""
