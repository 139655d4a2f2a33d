"""One head's catalog split by cluster, searched one cluster per query (divide and conquer).

Two layouts hold the same vectors and return the same neighbours (exact inner product inside
the cluster):

- "lists": one IVF-flat index whose inverted lists are the clusters (the run's own
  assignments, not the IVF's k-means), searched with each query's list given
  (`search_preassigned`): every (trigger, cluster) pair of a request in one FAISS call.
- "indexes": one flat index per cluster, every cluster's queries in one call per cluster.

bench/cluster_layout.py measures both side by side: "indexes" is the default because a user's
partitioned search took 0.83-0.89x the time with it on synthetic, ml-1m and a random 200k
catalog alike, for the same bytes (docs/benchmarks.md, "Cluster layouts").

The centroids are the normalised means of the head's own vectors over each cluster, so the
clusters (made once, from one embedding: RUN/clusters) serve every head and model.

Example:
    part = ClusterIndex.build(head.vectors, clustering.assignments)
    sims, ids = part.search(queries, clusters, depth=60)  # query i searched in clusters[i]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from mtmh.clusters.kmeans import member_centroids
from mtmh.index.faiss_index import build_exact

ClusterLayout = Literal["indexes", "lists"]
CLUSTER_LAYOUTS: tuple[str, ...] = get_args(ClusterLayout)


@dataclass
class ClusterIndex:
    """One head's catalog split by cluster: its centroids in the head's space and its
    vectors indexed cluster by cluster (ids are item ids)."""

    centroids: np.ndarray  # [K, D] float32, unit norm (normalised mean of the members)
    sizes: np.ndarray  # [K] items per cluster
    assignments: np.ndarray  # [N] the cluster of each item id
    layout: ClusterLayout
    index: Any  # "lists": an IndexIVFFlat; "indexes": a list of per-cluster flat indexes

    @classmethod
    def build(
        cls, vectors: np.ndarray, assignments: np.ndarray, layout: str = "indexes"
    ) -> ClusterIndex:
        if len(assignments) != len(vectors):
            raise ValueError(
                f"clusters cover {len(assignments)} items, the head has {len(vectors)}"
            )
        if layout not in CLUSTER_LAYOUTS:
            raise ValueError(f"cluster layout {layout!r}: expected one of {CLUSTER_LAYOUTS}")
        centroids = member_centroids(vectors, assignments)
        sizes = np.bincount(assignments, minlength=len(centroids))
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if layout == "lists":
            index: Any = _cluster_lists(x, np.asarray(assignments, np.int64), centroids)
        else:
            index = [
                build_exact(x[members], members)
                for members in (np.flatnonzero(assignments == c) for c in range(len(centroids)))
            ]
        return cls(centroids, sizes, np.asarray(assignments), layout, index)  # type: ignore[arg-type]

    @property
    def num_clusters(self) -> int:
        return len(self.centroids)

    def search(
        self, queries: np.ndarray, clusters: np.ndarray, depth: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """[P, D] queries, [P] the cluster each searches -> ([P, depth] similarities,
        [P, depth] item ids) of that cluster only, best first; -1 (and -inf) past its size."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        clusters = np.asarray(clusters, np.int64)
        depth = max(1, min(depth, int(self.sizes.max())))
        if self.layout == "lists":
            from faiss.contrib.ivf_tools import search_preassigned

            sims, ids = search_preassigned(self.index, q, depth, clusters[:, None])
            return sims, ids
        sims = np.full((len(q), depth), -np.inf, np.float32)
        ids = np.full((len(q), depth), -1, np.int64)
        for c in np.unique(clusters):
            rows = np.flatnonzero(clusters == c)
            d = min(depth, int(self.sizes[c]))
            sims[rows, :d], ids[rows, :d] = self.index[c].search(q[rows], d)
        return sims, ids


def _cluster_lists(x: np.ndarray, assignments: np.ndarray, centroids: np.ndarray) -> Any:
    """An inner-product IVF-flat index whose list c holds exactly cluster c's items: the
    lists are filled directly (an IVF-flat code is the raw float32 vector), since the
    assignment is given, not the quantizer's."""
    import faiss

    quantizer = faiss.IndexFlatIP(x.shape[1])
    quantizer.add(centroids)
    ivf = faiss.IndexIVFFlat(quantizer, x.shape[1], len(centroids), faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True  # the lists are given, not learnt
    lists = ivf.invlists
    assert lists is not None  # an IVF index made with its quantizer owns its lists
    for c in range(len(centroids)):
        members = np.flatnonzero(assignments == c).astype(np.int64)
        codes = np.ascontiguousarray(x[members]).view(np.uint8)
        lists.add_entries(c, len(members), faiss.swig_ptr(members), faiss.swig_ptr(codes))
    ivf.ntotal = len(x)
    ivf.nprobe = 1  # one list per query, the one it names
    return ivf
