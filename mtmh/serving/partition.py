"""Divide-and-conquer requests: a served head searched cluster by cluster, with the merge
strategy and the number of clusters visited chosen per request, as alpha is.

A request's `strategy` is "global" (the one nearest-neighbour search, the default) or a merge
strategy of mtmh/retrieval/partitioned.py ("score", "affinity", "uniform"), with `visit`
clusters per trigger (default: the run's `clusters.visit`). A partitioned head returns its
K_ann per trigger shared among the visited clusters, the user's seen items already left out,
with the cut that shares each trigger's K the same way once the preranker (or ANN order) has
ordered them, so the strategy's quotas hold on what the user gets; the alpha merge and the
pool are the same as for a global search.

The per-cluster indexes live inside each head's deployment, beside its global index: one
hop per head either way (a deployment of its own would add a hop per request), and
docs/benchmarks.md has the latency of both searches measured side by side. A replica builds
a head's per-cluster indexes on its first divide-and-conquer request and keeps them with the
head's vectors (the trigger queries): 2 x N x D floats beyond the global index (ml-1m: 4 MB;
1 GB at 1M x 128, which a replica that never gets such a request never holds).

Example:
    part = run.load_partition("engagement")          # None when the run has no clusters
    setting = PartitionSetting("uniform", visit=8)
    found = part.searcher(setting).candidates(triggers, k_ann=168, keep=30, blocked=blocked)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtmh.retrieval.cluster_index import ClusterIndex
from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.partitioned import GLOBAL, MERGE_STRATEGIES, PartitionedHead

SEARCH_STRATEGIES: tuple[str, ...] = (GLOBAL, *MERGE_STRATEGIES)


@dataclass(frozen=True)
class PartitionSetting:
    """How one request searches cluster by cluster."""

    strategy: str  # one of MERGE_STRATEGIES
    visit: int  # clusters per trigger


class ServedPartition:
    """One head of one version, split by the run's clusters."""

    def __init__(self, head: HeadIndex, assignments: np.ndarray, temperature: float) -> None:
        self.head = head  # with its vectors: the triggers' queries
        self.clusters = ClusterIndex.build(head.vectors, assignments)
        self.temperature = temperature

    @property
    def num_clusters(self) -> int:
        return self.clusters.num_clusters

    def searcher(self, setting: PartitionSetting) -> PartitionedHead:
        """The head as `setting` searches it (a view: the indexes are shared)."""
        return PartitionedHead.of(
            self.head, self.clusters, setting.visit, setting.strategy, self.temperature
        )
