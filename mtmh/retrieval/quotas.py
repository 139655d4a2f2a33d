"""Sharing a trigger's places among the clusters it visited (divide and conquer's merge).

A cluster-partitioned head (mtmh/retrieval/partitioned.py) shares places twice: its K_ann
candidates among the visited clusters, so the preranker has a choice inside every cluster;
then, once the candidates are ordered (by the preranker, or by similarity in ANN order), the K
each trigger keeps, so the merge strategy's quotas hold on what the user gets. Both use the
same rule:

- `cluster_quotas`: whole places in proportion to weights, by largest remainder;
- `fill_quotas`: each cluster's first `quota` candidates, and a short cluster's places to the
  best leftovers;
- `QuotaCut`: the second share, carried with a head's search to wherever the candidates are
  ordered (the evaluation, the fused Serve replica, the Serve graph's preranker deployment).

Example:
    cluster_quotas(np.array([3.0, 1.0]), 4)   # [3, 1]
    cut.apply(ordered)                        # per trigger: its quota'd K first, best first
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# One head's candidates for each trigger, best first: (item ids, scores) (merge.Ordered).
_Ordered = list[tuple[np.ndarray, np.ndarray]]


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


def quota_taken(groups: np.ndarray, quotas: np.ndarray, k: int) -> np.ndarray:
    """Candidates listed best first, each in group `groups[i]` (an index into `quotas`) ->
    the mask of the k taken: each group's first `quota`, then the first of the rest for the
    places a short group left."""
    by_group = np.argsort(groups, kind="stable")  # stable: best first within each group
    in_group = groups[by_group]
    rank_in_group = np.empty(len(groups), np.int64)
    rank_in_group[by_group] = np.arange(len(groups)) - np.searchsorted(in_group, in_group)
    taken = rank_in_group < quotas[groups]
    free = k - int(taken.sum())
    if free > 0:
        taken[np.flatnonzero(~taken)[:free]] = True
    return taken


def fill_quotas(
    lists: list[tuple[np.ndarray, np.ndarray]], quotas: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per visited cluster, its valid candidates (similarities, ids; best first) -> the K
    taken: each cluster's first `quota` (all of them by similarity when `quotas` is None),
    then the places a short cluster left to the most similar leftovers. Returned best first."""
    sims = np.concatenate([s for s, _ in lists]) if lists else np.zeros(0, np.float32)
    ids = np.concatenate([i for _, i in lists]) if lists else np.zeros(0, np.int64)
    order = np.lexsort((ids, -sims))
    sims, ids = sims[order], ids[order]
    if quotas is None:
        return sims[:k], ids[:k]
    groups = np.repeat(np.arange(len(lists)), [len(i) for _, i in lists])[order]
    taken = quota_taken(groups, quotas, k)
    return sims[taken], ids[taken]


@dataclass(frozen=True)
class QuotaCut:
    """How a partitioned head shares each trigger's K kept candidates among its visited
    clusters, carried with the head's search (`HeadSearch.cut`) to wherever the candidates
    get their final order. None of `quotas`: the "score" strategy (no quotas at all)."""

    ids: np.ndarray  # [T, K_ann] the searched candidates, -1 where a row ran short
    clusters: np.ndarray  # [T, K_ann] the cluster of each
    quotas: np.ndarray | None  # [T, C] places per cluster id among the K (0: not visited)
    keep: int  # K

    def apply(self, ordered: _Ordered) -> _Ordered:
        """Per trigger, its candidates (a subset of the searched ones, best first) reordered
        so that the first K hold each cluster's quota, best first, and the rest follow in
        their order: the merge takes a trigger's first K not yet taken by another."""
        if self.quotas is None:
            return ordered
        out = []
        for t, (ids, scores) in enumerate(ordered):
            by_id = np.argsort(self.ids[t], kind="stable")
            pos = by_id[np.searchsorted(self.ids[t], ids, sorter=by_id)]
            taken = quota_taken(self.clusters[t, pos], self.quotas[t], self.keep)
            order = np.concatenate([np.flatnonzero(taken), np.flatnonzero(~taken)])
            out.append((ids[order], scores[order]))
        return out
