"""The preranker's features of one user's ANN candidates: s(user, trigger, candidate).

Input is what the ANN stage returned for the user's triggers, per head: [T, K] similarities
and candidate ids, best first (T triggers most recent first, K = K_ann + 1). Every valid
candidate (not the trigger, not a seen item, not faiss's -1) of every head's list becomes one
row, with what a ranking engineer would reach for:

    own_sim            the list's own similarity (the ANN order; the residual starts here)
    log_rank           log1p(position in the trigger's list)
    sim@g, in@g        per head g of the model: the candidate's similarity in g's list for
                       the same trigger, or that list's lowest when g did not retrieve it
    log_hits@g         per head g: log1p(how many of the user's triggers retrieved it)
    sim_sum@g          per head g: its similarity summed over those triggers
    log_recency        log1p(the trigger's position, 0 = most recent)
    log_triggers       log1p(T)
    log_count, log_age the candidate's engagements and age (days) in the training log
    head=h             one-hot of the list's head

Features are plain numpy, so the evaluation, the Serve app's preranker deployment and the
training examples compute them with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mtmh.preranker.item_stats import ItemStats
from mtmh.retrieval.heads import Searched
from mtmh.retrieval.ranking import valid_mask, within_reach


def feature_names(heads: Sequence[str]) -> list[str]:
    """Column names of `candidate_features` for a model with these heads (in this order)."""
    return [
        "own_sim",
        "log_rank",
        *(f"{kind}@{g}" for g in heads for kind in ("sim", "in")),
        *(f"{kind}@{g}" for g in heads for kind in ("log_hits", "sim_sum")),
        "log_recency",
        "log_triggers",
        "log_count",
        "log_age",
        *(f"head={g}" for g in heads),
    ]


@dataclass(frozen=True)
class CandidateRows:
    """One head's valid candidates for one user: a row each."""

    features: np.ndarray  # [R, F] float32
    trigger_pos: np.ndarray  # [R] row of the [T, K] search result
    column: np.ndarray  # [R] column of the [T, K] search result
    items: np.ndarray  # [R] candidate item ids


@dataclass(frozen=True)
class _HeadLists:
    """One head's valid (trigger, candidate, similarity) entries, indexed for look-ups."""

    keys: np.ndarray  # [E] sorted trigger_pos * (N + 1) + item
    sims: np.ndarray  # [E] similarity of each key
    row_floor: np.ndarray  # [T] lowest valid similarity of each trigger's list (0 if none)
    items: np.ndarray  # [U] distinct items retrieved by any trigger, sorted
    hits: np.ndarray  # [U] triggers that retrieved each
    sim_sum: np.ndarray  # [U] summed similarity over those triggers

    def lookup(self, trigger_pos: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        """[R, 4]: sim (or the row floor), retrieved?, log1p(hits), summed similarity."""
        keys = trigger_pos * (n + 1) + items
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        found = self.keys[at] == keys if len(self.keys) else np.zeros(len(keys), bool)
        sim = np.where(found, self.sims[at] if len(self.sims) else 0.0, self.row_floor[trigger_pos])
        u = np.minimum(np.searchsorted(self.items, items), max(len(self.items) - 1, 0))
        known = self.items[u] == items if len(self.items) else np.zeros(len(items), bool)
        hits = np.where(known, self.hits[u] if len(self.hits) else 0, 0)
        sim_sum = np.where(known, self.sim_sum[u] if len(self.sim_sum) else 0.0, 0.0)
        return np.stack([sim, found, np.log1p(hits), sim_sum], axis=1)


def _index_lists(sims: np.ndarray, cands: np.ndarray, valid: np.ndarray, n: int) -> _HeadLists:
    t_pos, _ = np.nonzero(valid)
    items, s = cands[valid].astype(np.int64), sims[valid].astype(np.float64)
    keys = t_pos * (n + 1) + items
    order = np.argsort(keys, kind="stable")
    floor = np.where(valid, sims, np.inf).min(axis=1) if sims.size else np.zeros(len(sims))
    floor = np.where(np.isfinite(floor), floor, 0.0)
    uniq, inverse, hits = np.unique(items, return_inverse=True, return_counts=True)
    sim_sum = np.bincount(inverse, weights=s, minlength=len(uniq))
    return _HeadLists(keys[order], s[order], floor, uniq, hits, sim_sum)


def candidate_features(
    searched: Searched,
    heads: Sequence[str],
    triggers: np.ndarray,
    blocked: np.ndarray,
    stats: ItemStats,
    reach: Mapping[str, int | None] | None = None,
) -> dict[str, CandidateRows]:
    """{head: its valid candidates' feature rows} for one user (columns: `feature_names`).
    With `reach`, a head's rows are only its `reach[head]` nearest valid candidates per trigger
    (None: all): the ranking drops the rest, so scoring them would be wasted. The cross-head
    features still read every head's whole lists, so a row's features do not depend on it."""
    missing = [h for h in heads if h not in searched]
    if missing:
        raise ValueError(f"the preranker reads heads {list(heads)}; the search lacks {missing}")
    triggers = np.asarray(triggers, np.int64)
    n = len(blocked) - 1
    valid = {h: valid_mask(searched[h].ids, triggers, blocked) for h in heads}
    lists = {h: _index_lists(searched[h].sims, searched[h].ids, valid[h], n) for h in heads}
    out = {}
    for hi, h in enumerate(heads):
        sims, cands = searched[h].sims, searched[h].ids
        t_pos, col = np.nonzero(within_reach(valid[h], (reach or {}).get(h)))
        items = cands[t_pos, col].astype(np.int64)
        cross = [lists[g].lookup(t_pos, items, n) for g in heads]  # per g: [R, 4]
        onehot = np.zeros((len(items), len(heads)), np.float32)
        onehot[:, hi] = 1.0
        features = np.column_stack(
            [
                sims[t_pos, col],
                np.log1p(col),
                *(c[:, :2] for c in cross),
                *(c[:, 2:] for c in cross),
                np.log1p(t_pos),
                np.full(len(items), np.log1p(len(triggers))),
                stats.features(items),
                onehot,
            ]
        ).astype(np.float32)
        out[h] = CandidateRows(features, t_pos, col, items)
    return out
