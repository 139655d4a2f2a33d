"""The quota merge of the two heads' preranked candidates (spec section 6, step 3).

alpha is the engagement head's share of the final K, in percent: the top round(K·alpha/100)
engagement candidates go in first, then relevance candidates fill the rest. An item both
heads found is taken once (tagged with the head that took it first), and a head that runs out
of unique items leaves its places to the other, so exactly K come out whenever the two lists
hold K unique items between them.

Inputs are each head's candidates already ranked best first; ties in the preranker score must
already be broken (the evaluation and the Serve app break them by item id), which keeps the
merge deterministic.

Example:
    quota_merge([(7, 2.1), (3, 1.9)], [(3, 1.9), (5, 1.2)], k=3, alpha=50)
    # [Candidate(7, 2.1, "engagement"), Candidate(3, 1.9, "relevance"),
    #  Candidate(5, 1.2, "relevance")]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, cast

import numpy as np

ENGAGEMENT, RELEVANCE = "engagement", "relevance"

# One head's candidates for one trigger: (item id, score), best first.
Ranked = list[tuple[int, float]]
# One head's candidates for each trigger, all of them, best first: (item ids, scores).
Ordered = list[tuple[np.ndarray, np.ndarray]]


class Candidate(NamedTuple):
    """A tuple, not a dataclass: the evaluation builds millions of them per run, and a tuple
    is built several times faster than a frozen dataclass."""

    item_id: int
    score: float  # the ranking order's score: preranker probability, or scaled similarity
    head: str  # which head's list it was taken from


def engagement_quota(k: int, alpha: float) -> int:
    """How many of K places the engagement head gets; half places round up (alpha 50, K odd)."""
    if not 0.0 <= alpha <= 100.0:
        raise ValueError(f"alpha must be in [0, 100], got {alpha}")
    return min(k, math.floor(k * alpha / 100.0 + 0.5))


def quota_merge(
    engagement: Sequence[tuple[int, float]],
    relevance: Sequence[tuple[int, float]],
    k: int,
    alpha: float,
) -> list[Candidate]:
    """Exactly min(K, unique items) candidates: alpha% from engagement, the rest relevance."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    quota = engagement_quota(k, alpha)
    out: list[Candidate] = []
    taken: set[int] = set()
    eng_pos = _take(engagement, ENGAGEMENT, quota, 0, out, taken)
    _take(relevance, RELEVANCE, k, 0, out, taken)
    _take(engagement, ENGAGEMENT, k, eng_pos, out, taken)  # relevance ran out: engagement fills
    return out


def _take(
    ranked: Sequence[tuple[int, float]],
    head: str,
    limit: int,
    start: int,
    out: list[Candidate],
    taken: set[int],
) -> int:
    """Append ranked[start:]'s items not yet `taken` to `out` until it holds `limit`; returns
    where it stopped in `ranked`."""
    i, n = start, len(ranked)
    while i < n and len(out) < limit:
        item, score = ranked[i]
        i += 1
        if item not in taken:
            taken.add(item)
            out.append(Candidate(int(item), float(score), head))
    return i


def _merge_pair(kept: Mapping[str, object]) -> list[str]:
    """The heads of a merge, in quota order: one head alone, or engagement then relevance."""
    if len(kept) == 1:
        return list(kept)
    if set(kept) != {ENGAGEMENT, RELEVANCE}:
        raise ValueError(f"cannot merge heads {sorted(kept)}")
    return [ENGAGEMENT, RELEVANCE]


def merge_heads(kept: dict[str, list[Ranked]], k: int, alpha: float) -> list[list[Candidate]]:
    """Per trigger, the K final candidates: the quota merge of two heads, or the one head's
    list for a single-head model."""
    heads = _merge_pair(kept)
    if len(heads) == 1:
        return [[Candidate(i, s, heads[0]) for i, s in row[:k]] for row in kept[heads[0]]]
    return [
        quota_merge(e, r, k, alpha) for e, r in zip(kept[ENGAGEMENT], kept[RELEVANCE], strict=True)
    ]


def merge_distinct(ordered: Mapping[str, Ordered], k: int, alpha: float) -> list[list[Candidate]]:
    """Per trigger, most recent first, K candidates that no more recent trigger's merged list
    holds: each head offers its K best such items, and the quota merges them. A user's
    triggers thus pool up to T x K distinct items, and a preranker whose score already counts
    how many triggers retrieved an item does not spend every trigger's slots on it."""
    heads = _merge_pair(ordered)
    num_triggers = len(ordered[heads[0]])
    top = [int(ids.max()) for h in heads for ids, _ in ordered[h] if len(ids)]
    taken = np.zeros(max(top, default=-1) + 1, bool)
    out = []
    for t in range(num_triggers):
        offers: list[Ranked] = []
        for h in heads:
            ids, scores = ordered[h][t]
            fresh = np.flatnonzero(~taken[ids])[:k]
            offers.append(list(zip(ids[fresh].tolist(), scores[fresh].tolist(), strict=True)))
        if len(heads) == 1:
            merged = [Candidate(i, s, heads[0]) for i, s in offers[0]]
        else:
            merged = quota_merge(offers[0], offers[1], k, alpha)
        taken[[c.item_id for c in merged]] = True
        out.append(merged)
    return out


Kept = Mapping[str, Ordered] | Mapping[str, list[Ranked]]  # what a ranking order hands the merge


def merge_order(order: str, kept: Kept, k: int, alpha: float) -> list[list[Candidate]]:
    """Per trigger, the K merged candidates of a ranking order: the preranker's distinct merge
    of its `Ordered` lists, or ANN order's quota merge of each head's K most similar."""
    if order == "preranker":
        return merge_distinct(cast(Mapping[str, Ordered], kept), k, alpha)
    return merge_heads(cast(dict[str, list[Ranked]], dict(kept)), k, alpha)


Pooling = Literal["max", "sum"]
# How each ranking order pools a user's triggers: both add an item's scores over the triggers
# that kept it. ANN order sums its scale-free similarities; the preranker's merge keeps an
# item for one trigger only, so its pooled score is its probability.
POOLING: dict[str, Pooling] = {"preranker": "sum", "ann": "sum"}


def pooled_scores(
    per_trigger: Sequence[Sequence[Candidate]], how: Pooling = "max"
) -> tuple[dict[int, float], dict[int, str]]:
    """Each item's pooled score over the triggers ("max": its best; "sum": their total), and
    the head of its best candidate (the first one on ties)."""
    score: dict[int, float] = {}
    best: dict[int, float] = {}
    head: dict[int, str] = {}
    for row in per_trigger:
        for item, s, h in row:
            if item not in best:
                score[item] = best[item] = s
                head[item] = h
                continue
            if how == "sum":
                score[item] += s
            if s > best[item]:
                best[item], head[item] = s, h
                if how == "max":
                    score[item] = s
    return score, head


def top_items(score: Mapping[int, float], top_k: int) -> list[int]:
    """The `top_k` items by score, ties broken by item id."""
    return sorted(score, key=lambda i: (-score[i], i))[:top_k]


def pool_candidates(
    per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max"
) -> list[Candidate]:
    """A user's candidates over all triggers, deduplicated, the top `top_k` (ties: item id).
    "max": an item keeps its best score and that candidate's head; "sum": its scores over
    the triggers add up, and it keeps the head of its best one."""
    score, head = pooled_scores(per_trigger, how)
    return [Candidate(i, score[i], head[i]) for i in top_items(score, top_k)]


def pool(per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max") -> Ranked:
    """`pool_candidates` as (item, score) pairs."""
    score, _ = pooled_scores(per_trigger, how)
    return [(i, score[i]) for i in top_items(score, top_k)]
