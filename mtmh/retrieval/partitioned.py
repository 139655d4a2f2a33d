"""Cluster-partitioned retrieval (divide and conquer, spec section 11) for any embedding.

Instead of one nearest-neighbour search over the whole catalog, each trigger visits the
`visit` clusters its embedding is closest to (cosine to the cluster's centroid in the head's
own space), searches each visited cluster's own index, and a merge strategy decides how many
of the K places each visited cluster gets:

- "score": none; the K most similar items of the visited clusters. Visiting every cluster is
  the global search.
- "affinity": places in proportion to the trigger's affinity to each visited cluster,
  softmax(cosine to the centroid / `temperature`) over the visited clusters. The raw cosines
  of a trigger's few nearest centroids are close to each other (their shares would be all but
  uniform); the temperature (0.1 by default) makes the nearest cluster count several times
  the fourth.
- "uniform": equal places for every visited cluster: the most spread.

Quotas are whole numbers by largest remainder (ties to the closer cluster), shared twice
(mtmh/retrieval/quotas.py): the head's K_ann candidates per trigger, so the preranker chooses
inside every visited cluster, and the K each trigger keeps once the candidates are ordered
(by the preranker or by similarity), so the strategy's quotas hold on what the user gets. A
cluster with fewer valid items than its quota leaves its places to the others, best first.
The trigger itself and the user's seen items are excluded before either share is filled.

A prompted model (dat) has a query per cluster (mtmh/clusters/query_table.py): a visited
cluster is searched with the trigger's query for that cluster, not with its plain vector.
Which clusters a trigger visits, and their affinities, come from its plain vector either way.

Example:
    part = ClusterIndex.build(head.vectors, clustering.assignments)
    ph = PartitionedHead.of(head, part, visit=8, strategy="uniform")
    found = ph.candidates(triggers, k_ann=168, keep=30, blocked=blocked_items(n, seen))
    found.cut.apply(ordered)   # per trigger: the strategy's K first
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from mtmh.retrieval.cluster_index import ClusterIndex
from mtmh.retrieval.heads import HeadIndex, HeadSearch
from mtmh.retrieval.quotas import QuotaCut, cluster_quotas, fill_quotas
from mtmh.retrieval.ranking import blocked_items, valid_mask

MergeStrategy = Literal["score", "affinity", "uniform"]
MERGE_STRATEGIES: tuple[str, ...] = get_args(MergeStrategy)
GLOBAL = "global"  # no partitioning: one nearest-neighbour search (requests, reports, benches)


@dataclass
class PartitionedHead(HeadIndex):
    """A head searched cluster by cluster (see the module docstring); the same interface as
    `HeadIndex`, so the preranker, the merges and the pool work unchanged."""

    partition: ClusterIndex | None = None
    visit: int = 8
    strategy: MergeStrategy = "uniform"
    temperature: float = 0.1  # of the "affinity" strategy's softmax
    queries: np.ndarray | None = None  # [N, K, D]: a prompted model's query per cluster

    @classmethod
    def of(
        cls,
        head: HeadIndex,
        partition: ClusterIndex,
        visit: int,
        strategy: str,
        temperature: float = 0.1,
        queries: np.ndarray | None = None,
    ) -> PartitionedHead:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if strategy not in MERGE_STRATEGIES:
            raise ValueError(f"merge strategy {strategy!r}: expected one of {MERGE_STRATEGIES}")
        if not 1 <= visit <= partition.num_clusters:
            raise ValueError(f"visit={visit}: expected 1..{partition.num_clusters} clusters")
        if queries is not None and queries.shape[:2] != (len(head.vectors), partition.num_clusters):
            raise ValueError(
                f"queries of shape {queries.shape}: expected ({len(head.vectors)}, "
                f"{partition.num_clusters}, D), a query per item and cluster"
            )
        return cls(
            head.model,
            head.head,
            head.version,
            head.vectors,
            head.index,
            partition,
            visit,
            strategy,  # type: ignore[arg-type]
            temperature,
            queries,
        )

    def candidates(
        self, triggers: np.ndarray, k_ann: int, keep: int, blocked: np.ndarray | None = None
    ) -> HeadSearch:
        """[T] trigger ids -> ([T, k_ann] similarities, [T, k_ann] item ids) best first, -1
        where the visited clusters ran out, none of them the trigger or `blocked` ([N + 1],
        the user's seen items); and the cut that shares each trigger's `keep` among them."""
        part = self.partition
        assert part is not None
        triggers = np.asarray(triggers, np.int64)
        blocked = blocked if blocked is not None else blocked_items(len(self.vectors), ())
        plain = self.vectors[triggers]
        affinity = plain @ part.centroids.T  # [T, K]
        visited = np.argsort(-affinity, axis=1, kind="stable")[:, : self.visit]  # [T, V]
        pair_trigger = np.repeat(np.arange(len(triggers)), self.visit)
        pair_cluster = visited.ravel()
        if self.queries is None:
            queries = plain[pair_trigger]
        else:
            queries = self.queries[triggers[pair_trigger], pair_cluster]
        # Deep enough that excluding the trigger and every blocked item still leaves k_ann.
        depth = k_ann + 1 + int(blocked[:-1].sum())
        sims, ids = part.search(queries, pair_cluster, depth)  # [T * V, depth]
        ok = valid_mask(ids, triggers[pair_trigger], blocked)
        out_sims = np.full((len(triggers), k_ann), -np.inf, np.float32)
        out_ids = np.full((len(triggers), k_ann), -1, np.int64)
        keep_quotas = np.zeros((len(triggers), part.num_clusters), np.int64)
        for t in range(len(triggers)):
            pairs = range(t * self.visit, (t + 1) * self.visit)
            lists = [(sims[p][ok[p]], ids[p][ok[p]]) for p in pairs]
            weights = self._weights(affinity[t, visited[t]])
            s, i = fill_quotas(lists, _quotas(weights, k_ann), k_ann)
            out_sims[t, : len(i)], out_ids[t, : len(i)] = s, i
            if weights is not None:
                keep_quotas[t, visited[t]] = cluster_quotas(weights, keep)
        clusters = np.where(out_ids >= 0, part.assignments[out_ids], -1)
        cut = QuotaCut(out_ids, clusters, None if self.strategy == "score" else keep_quotas, keep)
        return HeadSearch(out_sims, out_ids, cut)

    def search(
        self, items: np.ndarray, k: int, blocked: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The K a trigger keeps in similarity order (ANN order's): `candidates` with k of
        them, shared by the strategy's quotas at k."""
        found = self.candidates(items, k, k, blocked)
        return found.sims, found.ids

    def _weights(self, affinity: np.ndarray) -> np.ndarray | None:
        """The visited clusters' shares of a trigger's places (None: "score", no quotas)."""
        if self.strategy == "score":
            return None
        if self.strategy == "uniform":
            return np.ones(len(affinity))
        return np.exp((affinity - affinity.max()) / self.temperature)


def _quotas(weights: np.ndarray | None, k: int) -> np.ndarray | None:
    return None if weights is None else cluster_quotas(weights, k)
