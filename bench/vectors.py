"""The vectors of the benchmarks beside ChromaDB (bench.search, bench.ingest), with numpy.

2,000 cluster centres uniform on the unit sphere; each vector is a centre plus Gaussian noise of
norm about `sigma` (per-dimension sigma / sqrt(dim)), then unit-normalized. Queries are fresh
points drawn the same way. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np


def make_data(n: int, queries: int, dim: int, sigma: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """n vectors and `queries` query vectors, float32, each row of norm 1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        pts = centres[rng.integers(0, len(centres), count)] + rng.normal(scale=sigma / np.sqrt(dim), size=(count, dim)).astype(np.float32)
        return pts / np.linalg.norm(pts, axis=1, keepdims=True)

    return draw(n), draw(queries)
