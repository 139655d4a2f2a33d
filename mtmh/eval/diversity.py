"""Diversity and fairness of the served lists (spec section 11, the measures of divide and
conquer), for every model row of the report.

Per user, on the pooled top `eval.top_k` (mean and standard error over users):
- `topics_l1`, `topics_l2`: distinct labels among the list's items at that level;
- `clusters`: distinct catalog clusters among them (when the run has clusters: RUN/clusters);
- `ils`: intra-list similarity, the mean pairwise cosine of the list's items in the content
  encoder's space. One space for every model, so rows compare; lower is more diverse.
Over all evaluated users:
- `coverage`: the share of the catalog in at least one user's list;
- `exposure_gini`: the Gini coefficient of the items' exposure (how many lists hold each item),
  over the whole catalog, unexposed items included: 0 when every item is shown equally often,
  near 1 when a few items take every place;
- `tail_share`: the share of all exposure that reaches the least popular half of the catalog
  (by T1 interactions, ties by item id).

Like topic match, this reads the evaluation labels, so it stays downstream of every model.

Example:
    catalog = EvalCatalog.load(run_dir)
    meter = DiversityMeter(catalog)
    meter.add([12, 7, 301])  # one user's pooled list, best first
    meter.result()  # {"topics_l1": ..., "topics_l1_se": ..., "coverage": ..., ...}
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtmh.clusters.artifact import has_clusters, load_clusters
from mtmh.embeddings import EmbeddingSource
from mtmh.eval.cold_start import new_items
from mtmh.eval.metrics import UserMeans
from mtmh.eval.topic_match import TopicLevel, label_sets


@dataclass(frozen=True)
class EvalCatalog:
    """What the evaluation's catalog-level measures read, per item id."""

    levels: dict[str, TopicLevel]  # "l1", "l2"
    tail: np.ndarray  # [N] bool: the least popular half by T1 interactions
    content: np.ndarray | None  # [N, D] unit-norm content embeddings (None: no ILS)
    clusters: np.ndarray | None  # [N] cluster id (None: the run has no clusters)
    new: np.ndarray | None = None  # [N] bool: new items (mtmh/eval/cold_start.py)

    @property
    def num_items(self) -> int:
        return len(self.tail)

    @classmethod
    def load(cls, run_dir: Path, new_items_from: int | None = None) -> EvalCatalog:
        """The run's labels, popularity and content embeddings, its clusters if it has them
        (RUN/clusters), and its new items (`eval.new_items_from`)."""
        items = pq.read_table(
            run_dir / "data" / "items.parquet", columns=["item_id", "t1_interactions"]
        ).sort_by("item_id")
        content = None
        with contextlib.suppress(FileNotFoundError):  # no content stage: no ILS column
            _, content = EmbeddingSource.content(run_dir).load("content")
        t1 = items["t1_interactions"].to_numpy()
        tail = least_popular_half(t1)
        clusters = None
        if has_clusters(run_dir):
            clusters = load_clusters(run_dir, len(tail))[0].assignments
        new = new_items(t1, new_items_from)
        return cls(label_sets(run_dir), tail, content, clusters, new)


def least_popular_half(counts: np.ndarray) -> np.ndarray:
    """[N] bool: the floor(N / 2) items with the fewest interactions (ties: lower item id)."""
    order = np.lexsort((np.arange(len(counts)), counts))
    tail = np.zeros(len(counts), bool)
    tail[order[: len(counts) // 2]] = True
    return tail


def gini(values: np.ndarray) -> float:
    """The Gini coefficient of non-negative values (0: all equal; (n-1)/n: one holds all)."""
    x = np.sort(np.asarray(values, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(2 * (ranks * x).sum() / (n * total) - (n + 1) / n)


def intra_list_similarity(vectors: np.ndarray) -> float:
    """Mean cosine over the distinct pairs of a list's unit vectors (NaN below two items).
    With s the sum of the vectors, the pairs' sum is (|s|^2 - n) / 2, so no n x n matrix."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    s = vectors.sum(axis=0, dtype=np.float64)
    return float((s @ s - (vectors.astype(np.float64) ** 2).sum()) / (n * (n - 1)))


class DiversityMeter:
    """The measures above over a stream of users' lists."""

    def __init__(self, catalog: EvalCatalog) -> None:
        self.catalog = catalog
        self.exposure = np.zeros(catalog.num_items, np.int64)
        self.means = UserMeans()

    def add(self, items: Sequence[int]) -> None:
        ids = np.unique(np.asarray(items, np.int64))
        self.exposure[ids] += 1
        cat = self.catalog
        for level, topics in cat.levels.items():
            labels = topics.labels
            self.means.add(f"topics_{level}", len(frozenset().union(*(labels[i] for i in ids))))
        if cat.clusters is not None:
            self.means.add("clusters", len(np.unique(cat.clusters[ids])))
        if cat.content is not None and len(ids) > 1:
            self.means.add("ils", intra_list_similarity(cat.content[ids]))

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in self.means.measured():
            out[str(key)] = self.means.mean(key)
            out[f"{key}_se"] = self.means.se(key)
        shown = self.exposure.sum()
        out["coverage"] = float((self.exposure > 0).mean())
        out["exposure_gini"] = gini(self.exposure)
        out["tail_share"] = (
            float(self.exposure[self.catalog.tail].sum() / shown) if shown else float("nan")
        )
        return out
