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

Quotas are whole numbers by largest remainder (ties to the closer cluster), so they add up
to K exactly. A cluster that has fewer valid items than its quota leaves its places to the
others, most similar first, so K come out whenever the visited clusters hold K valid items.
The trigger itself and the user's seen items are excluded before the quotas are filled (each
cluster is searched deep enough for that), so the quotas hold on what is returned.

The head's centroids are the normalised means of its own vectors over each cluster, so the
clusters (made once, from one embedding: RUN/clusters) serve every head and model.

A prompted model (dat) has a query per cluster (mtmh/clusters/query_table.py): a visited
cluster is searched with the trigger's query for that cluster, not with its plain vector.
Which clusters a trigger visits, and their affinities, come from its plain vector either way.

Example:
    part = ClusterIndex.build(head.vectors, clustering.assignments)
    ph = PartitionedHead.of(head, part, visit=8, strategy="uniform")
    sims, ids = ph.search(triggers, k=30, blocked=blocked_items(n, seen))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from mtmh.clusters.kmeans import member_centroids
from mtmh.index.faiss_index import build_exact, search
from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.ranking import blocked_items, valid_mask

MergeStrategy = Literal["score", "affinity", "uniform"]
MERGE_STRATEGIES: tuple[str, ...] = get_args(MergeStrategy)
GLOBAL = "global"  # no partitioning: one nearest-neighbour search (requests, reports, benches)


def cluster_quotas(weights: np.ndarray, k: int) -> np.ndarray:
    """[C] non-negative weights -> [C] whole places adding up to k, in proportion to the
    weights (all zero: equal). Largest remainder; ties go to the earlier cluster (callers
    list clusters closest first)."""
    w = np.asarray(weights, np.float64)
    if len(w) == 0:
        return np.zeros(0, np.int64)
    if (w < 0).any():
        raise ValueError("cluster weights must be >= 0")
    w = w if w.sum() > 0 else np.ones_like(w)
    exact = k * w / w.sum()
    quotas = np.floor(exact).astype(np.int64)
    short = k - int(quotas.sum())
    order = np.lexsort((np.arange(len(w)), -(exact - quotas)))
    quotas[order[:short]] += 1
    return quotas


def fill_quotas(
    lists: list[tuple[np.ndarray, np.ndarray]], quotas: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per visited cluster, its valid candidates (similarities, ids; best first) -> the K
    taken: each cluster's first `quota` (all of them by similarity when `quotas` is None),
    then the places a short cluster left to the most similar leftovers. Returned best first."""
    sims = np.concatenate([s for s, _ in lists]) if lists else np.zeros(0, np.float32)
    ids = np.concatenate([i for _, i in lists]) if lists else np.zeros(0, np.int64)
    if quotas is None:
        taken = np.zeros(len(ids), bool)
    else:
        rank_in_cluster = np.concatenate([np.arange(len(i)) for _, i in lists])
        quota_of_row = np.repeat(quotas, [len(i) for _, i in lists])
        taken = rank_in_cluster < quota_of_row
    free = k - int(taken.sum())
    if free > 0:
        rest = np.flatnonzero(~taken)
        best = rest[np.lexsort((ids[rest], -sims[rest]))][:free]
        taken[best] = True
    chosen = np.flatnonzero(taken)
    chosen = chosen[np.lexsort((ids[chosen], -sims[chosen]))]
    return sims[chosen], ids[chosen]


@dataclass
class ClusterIndex:
    """One head's catalog split by cluster: its centroids in the head's space and one exact
    inner-product index per cluster (ids are item ids)."""

    centroids: np.ndarray  # [K, D] float32, unit norm (normalised mean of the members)
    sizes: np.ndarray  # [K] items per cluster
    indexes: list[Any]  # per cluster: a FAISS index over its members

    @classmethod
    def build(cls, vectors: np.ndarray, assignments: np.ndarray) -> ClusterIndex:
        if len(assignments) != len(vectors):
            raise ValueError(
                f"clusters cover {len(assignments)} items, the head has {len(vectors)}"
            )
        centroids = member_centroids(vectors, assignments)
        k = len(centroids)
        sizes = np.bincount(assignments, minlength=k)
        indexes = []
        for c in range(k):
            members = np.flatnonzero(assignments == c)
            indexes.append(build_exact(vectors[members], members))
        return cls(centroids, sizes, indexes)

    @property
    def num_clusters(self) -> int:
        return len(self.centroids)


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

    def search(
        self, items: np.ndarray, k: int, blocked: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[T] trigger ids -> ([T, k] similarities, [T, k] item ids), best first, -1 where
        the visited clusters ran out. `blocked`: [N + 1] items never returned (seen)."""
        part = self.partition
        assert part is not None
        items = np.asarray(items, np.int64)
        blocked = blocked if blocked is not None else blocked_items(len(self.vectors), ())
        queries = self.vectors[items]
        affinity = queries @ part.centroids.T  # [T, K]
        visited = np.argsort(-affinity, axis=1, kind="stable")[:, : self.visit]
        sims_out = np.full((len(items), k), -np.inf, np.float32)
        ids_out = np.full((len(items), k), -1, np.int64)
        # Deep enough that excluding the trigger and every blocked item still leaves k.
        depth = k + 1 + int(blocked[:-1].sum())
        for t, (trigger, q) in enumerate(zip(items, queries, strict=True)):
            lists = [
                self._valid(c, self._query(trigger, c, q), trigger, k, depth, blocked)
                for c in visited[t]
            ]
            quotas = self._quotas(affinity[t, visited[t]], k)
            s, i = fill_quotas(lists, quotas, k)
            sims_out[t, : len(i)], ids_out[t, : len(i)] = s, i
        return sims_out, ids_out

    def _query(self, trigger: int, cluster: int, plain: np.ndarray) -> np.ndarray:
        """What searches `cluster` for `trigger`: its prompted query, or its plain vector."""
        return plain if self.queries is None else self.queries[trigger, cluster]

    def _quotas(self, affinity: np.ndarray, k: int) -> np.ndarray | None:
        if self.strategy == "score":
            return None
        if self.strategy == "uniform":
            return cluster_quotas(np.ones(len(affinity)), k)
        z = (affinity - affinity.max()) / self.temperature
        return cluster_quotas(np.exp(z), k)

    def _valid(
        self,
        cluster: int,
        query: np.ndarray,
        trigger: int,
        k: int,
        depth: int,
        blocked: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One cluster's k best valid candidates (not the trigger, not blocked), best first."""
        part = self.partition
        assert part is not None
        depth = min(int(part.sizes[cluster]), depth)
        sims, ids = search(part.indexes[cluster], query[None, :], depth)
        sims, ids = sims[0], ids[0]
        ok = valid_mask(ids[None, :], np.array([trigger]), blocked)[0]
        return sims[ok][:k], ids[ok][:k]
