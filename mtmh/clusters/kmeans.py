"""Spherical k-means of the catalog with FAISS: every item in exactly one cluster.

The vectors are unit-norm item embeddings, so "near" is cosine: FAISS's spherical k-means
renormalises the centroids after each iteration and assigns by inner product. FAISS splits
an empty cluster during training, but a catalog with many duplicate vectors can still leave
one empty after the final assignment; such clusters are dropped and the rest renumbered, so
cluster ids are always 0..K'-1 with no empty cluster.

Example:
    c = spherical_kmeans(vectors, k=32, seed=0)
    c.assignments[item_id]  # its cluster
    c.sizes()               # items per cluster, all > 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clustering:
    assignments: np.ndarray  # [N] int32: the cluster of each item id
    centroids: np.ndarray  # [K, D] float32, unit norm
    objective: float  # FAISS's final k-means objective (sum of inner products to centroids)

    @property
    def num_clusters(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignments, minlength=self.num_clusters)

    def members(self, cluster: int) -> np.ndarray:
        """The item ids of one cluster, ascending."""
        return np.flatnonzero(self.assignments == cluster)


def member_centroids(vectors: np.ndarray, assignments: np.ndarray) -> np.ndarray:
    """[K, D] float32: each cluster's normalised mean of its members' vectors, in whatever
    space `vectors` live (one set of clusters serves every head and model)."""
    k = int(assignments.max()) + 1
    sums = np.zeros((k, vectors.shape[1]), np.float64)
    np.add.at(sums, assignments, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def spherical_kmeans(
    vectors: np.ndarray, k: int, seed: int, iterations: int = 25, restarts: int = 1
) -> Clustering:
    """Cluster [N, D] unit vectors (row i = item i) into at most k non-empty clusters."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if not 2 <= k <= n:
        raise ValueError(f"cannot make {k} clusters of {n} items: need 2 <= k <= N")
    km = faiss.Kmeans(
        d,
        k,
        niter=iterations,
        nredo=restarts,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,  # small catalogs: no warning, no refusal
        verbose=False,
    )
    km.train(x)
    trained, objective = km.centroids, km.obj
    assert trained is not None and objective is not None  # set by train()
    _, assign = km.index.search(x, 1)
    assignments = assign[:, 0].astype(np.int64)
    used = np.unique(assignments)
    renumber = np.full(k, -1, np.int64)
    renumber[used] = np.arange(len(used))
    centroids = trained[used]
    centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    return Clustering(
        renumber[assignments].astype(np.int32),
        centroids.astype(np.float32),
        float(objective[-1]) if len(objective) else float("nan"),
    )
