"""Makes scripts/ a package, so that the benchmarks (`python -m bench.NAME` from the repository
root) import its text corpora as `scripts.sentences`. The scripts themselves run as files."""
