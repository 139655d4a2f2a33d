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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ENGAGEMENT, RELEVANCE = "engagement", "relevance"

# One head's candidates for one trigger: (item id, score), best first.
Ranked = list[tuple[int, float]]


@dataclass(frozen=True)
class Candidate:
    item_id: int
    score: float  # the preranker score
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

    def take(ranked: Sequence[tuple[int, float]], head: str, limit: int, start: int) -> int:
        """Append up to `limit` total candidates from ranked[start:]; returns where it stopped."""
        i = start
        while i < len(ranked) and len(out) < limit:
            item, score = ranked[i]
            i += 1
            if item not in taken:
                taken.add(item)
                out.append(Candidate(int(item), float(score), head))
        return i

    eng_pos = take(engagement, ENGAGEMENT, quota, 0)
    take(relevance, RELEVANCE, k, 0)
    take(engagement, ENGAGEMENT, k, eng_pos)  # relevance ran out: engagement fills the rest
    return out


def merge_heads(kept: dict[str, list[Ranked]], k: int, alpha: float) -> list[list[Candidate]]:
    """Per trigger, the K final candidates: the quota merge of two heads, or the one head's
    list for a single-head model."""
    if len(kept) == 1:
        ((name, lists),) = kept.items()
        return [[Candidate(i, s, name) for i, s in row[:k]] for row in lists]
    if set(kept) != {ENGAGEMENT, RELEVANCE}:
        raise ValueError(f"cannot merge heads {sorted(kept)}")
    return [
        quota_merge(e, r, k, alpha) for e, r in zip(kept[ENGAGEMENT], kept[RELEVANCE], strict=True)
    ]


Pooling = Literal["max", "sum"]
# How each ranking order pools a user's triggers: preranker scores are one user's scores of
# an item, the same from every trigger ("max" keeps it); similarities add up ("sum").
POOLING: dict[str, Pooling] = {"preranker": "max", "ann": "sum"}


def pool_candidates(
    per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max"
) -> list[Candidate]:
    """A user's candidates over all triggers, deduplicated, the top `top_k` (ties: item id).
    "max": an item keeps its best score and that candidate's head; "sum": its scores over
    the triggers add up, and it keeps the head of its best one."""
    best: dict[int, Candidate] = {}
    total: dict[int, float] = {}
    for row in per_trigger:
        for c in row:
            total[c.item_id] = total.get(c.item_id, 0.0) + c.score
            if c.item_id not in best or c.score > best[c.item_id].score:
                best[c.item_id] = c
    if how == "sum":
        best = {i: Candidate(i, total[i], c.head) for i, c in best.items()}
    return sorted(best.values(), key=lambda c: (-c.score, c.item_id))[:top_k]


def pool(per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max") -> Ranked:
    """`pool_candidates` as (item, score) pairs."""
    return [(c.item_id, c.score) for c in pool_candidates(per_trigger, top_k, how)]
