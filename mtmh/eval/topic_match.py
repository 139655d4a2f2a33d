"""Topic match of item-to-item neighbours: the paper's semantic-relevance metric.

A (trigger, candidate) pair matches at a level when their label sets (L1 or L2) share a
label. Pairs where either item has no label at that level are left out, so items missing an
L2 label neither help nor hurt. This module reads the evaluation labels and so must stay
downstream of every model.

A match rate means little without the rate of random pairs: a level where most pairs match
(ml-100k's Freebase genres, before the broad ones were dropped, matched 59% of random pairs)
cannot tell a relevant model from a popular one. `random_match_probability` gives, per item,
the exact chance that a uniformly random other labelled item shares a label with it; the
random rate of a set of pairs is its mean over their triggers, and lift = rate / random rate.

Example:
    nbrs = exact_neighbours(emb, k=10)           # [N, 10], self excluded
    topic_match_rate(nbrs, items["topic_l2"])    # share of matching pairs
    p = random_match_probability(items["topic_l2"])  # [N], NaN where unlabelled
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def exact_neighbours(emb: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    """[N, D] embeddings -> [Q, k] ids of each query item's top-k by inner product among all
    N items, self excluded; the queries are every item unless given."""
    import faiss

    n = len(emb)
    k = min(k, n - 1)
    queries = np.arange(n) if queries is None else queries
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(emb[queries], dtype=np.float32), k + 1)
    out = np.empty((len(queries), k), np.int64)
    for row_id, (i, row) in enumerate(zip(queries, ids, strict=True)):
        # Drop the item itself wherever it ranks (ties can put a duplicate first).
        out[row_id] = [j for j in row if j != i][:k]
    return out


def topic_match_rate(
    neighbours: np.ndarray,
    labels: Sequence[Sequence[str] | None],
    queries: np.ndarray | None = None,
) -> float:
    """Share of (item, neighbour) pairs, both labelled, that share a label; NaN if none.
    Row r of `neighbours` belongs to item `queries[r]` (item r when not given)."""
    sets = [frozenset(x or ()) for x in labels]
    rows = range(len(neighbours)) if queries is None else queries
    hits = total = 0
    for i, row in zip(rows, neighbours, strict=True):
        if not sets[i]:
            continue
        for j in row:
            if sets[j]:
                total += 1
                hits += not sets[i].isdisjoint(sets[j])
    return hits / total if total else float("nan")


def random_match_probability(labels: Sequence[Iterable[str] | None]) -> np.ndarray:
    """[N] chance that a uniformly random other labelled item shares a label with item i;
    NaN for unlabelled items (and for every item when fewer than two are labelled).

    Exact, without the N x N pair matrix: items are grouped by their label set (a catalog
    has far fewer distinct sets than items), and set pairs are compared once.
    """
    sets = [frozenset(x or ()) for x in labels]
    out = np.full(len(sets), np.nan)
    groups: dict[frozenset[str], list[int]] = {}
    for i, s in enumerate(sets):
        if s:
            groups.setdefault(s, []).append(i)
    labelled = sum(len(v) for v in groups.values())
    if labelled < 2:
        return out
    distinct = list(groups)
    sizes = np.array([len(groups[s]) for s in distinct])
    by_label: dict[str, list[int]] = {}
    for k, s in enumerate(distinct):
        for label in s:
            by_label.setdefault(label, []).append(k)
    for s in distinct:
        overlapping = {j for label in s for j in by_label[label]}  # includes s itself
        matches = int(sizes[list(overlapping)].sum()) - 1  # the item itself always matches
        out[groups[s]] = matches / (labelled - 1)
    return out


def neighbour_topic_match(
    emb: np.ndarray,
    levels: Mapping[str, Sequence[Sequence[str] | None]],
    k: int = 10,
    max_queries: int = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """Top-k exact neighbours of every item (of a seeded sample of `max_queries` items in a
    larger catalog; the neighbours come from all of it): per level, match rate, random rate
    and lift."""
    n = len(emb)
    queries = np.arange(n)
    if n > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
    nbrs = exact_neighbours(emb, k, queries)
    out: dict[str, float] = {"k": int(nbrs.shape[1]), "queries": len(queries)}
    for level, labels in levels.items():
        rate = topic_match_rate(nbrs, labels, queries)
        p = random_match_probability(labels)[queries]
        labelled = np.array([bool(x) for x in labels])
        # Weight each query by its labelled neighbours, as the match rate does.
        weight = labelled[nbrs].sum(axis=1) * labelled[queries]
        random = float((p[weight > 0] * weight[weight > 0]).sum() / max(weight.sum(), 1))
        out.update(
            {f"{level}_match": rate, f"{level}_random": random, f"{level}_lift": lift(rate, random)}
        )
    return out


def lift(rate: float, random: float) -> float:
    """Model match rate over the random-pair rate of the same triggers; NaN when undefined."""
    return rate / random if random > 0 and not np.isnan(rate) else float("nan")


@dataclass(frozen=True)
class TopicLevel:
    """One label level, per item id (evaluation only)."""

    labels: list[frozenset[str]]
    random_probability: np.ndarray  # chance a random labelled item matches; NaN if unlabelled


def label_sets(run_dir: Path) -> dict[str, TopicLevel]:
    """{"l1": ..., "l2": ...}: each level's label sets and random-pair match chances."""
    items = pq.read_table(
        run_dir / "data" / "items.parquet", columns=["item_id", "topic_l1", "topic_l2"]
    ).sort_by("item_id")
    out = {}
    for level in ("l1", "l2"):
        labels = [frozenset(x or ()) for x in items[f"topic_{level}"].to_pylist()]
        out[level] = TopicLevel(labels, random_match_probability(labels))
    return out
