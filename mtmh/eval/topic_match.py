"""Topic match of item-to-item neighbours: the paper's semantic-relevance metric.

A (trigger, candidate) pair matches at a level when their label sets (L1 or L2) share a
label. Pairs where either item has no label at that level are left out, so items missing an
L2 label neither help nor hurt. This module reads the evaluation labels and so must stay
downstream of every model.

Example:
    nbrs = exact_neighbours(emb, k=10)           # [N, 10], self excluded
    topic_match_rate(nbrs, items["topic_l2"])    # share of matching pairs
    topic_match_rate(random_neighbours(len(emb), 10, seed=0), items["topic_l2"])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def exact_neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    """[N, D] embeddings -> [N, k] ids of each item's top-k by inner product, self excluded."""
    import faiss

    n = len(emb)
    k = min(k, n - 1)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(emb, dtype=np.float32), k + 1)
    out = np.empty((n, k), np.int64)
    for i, row in enumerate(ids):
        # Drop the item itself wherever it ranks (ties can put a duplicate first).
        out[i] = [j for j in row if j != i][:k]
    return out


def random_neighbours(n: int, k: int, seed: int = 0) -> np.ndarray:
    """[N, k] uniformly random other items: the baseline a topic match must beat."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n - 1, size=(n, k))
    return ids + (ids >= np.arange(n)[:, None])  # skip self without bias


def topic_match_rate(neighbours: np.ndarray, labels: Sequence[Sequence[str] | None]) -> float:
    """Share of (item, neighbour) pairs, both labelled, that share a label; NaN if none."""
    sets = [frozenset(x or ()) for x in labels]
    hits = total = 0
    for i, row in enumerate(neighbours):
        if not sets[i]:
            continue
        for j in row:
            if sets[j]:
                total += 1
                hits += not sets[i].isdisjoint(sets[j])
    return hits / total if total else float("nan")
