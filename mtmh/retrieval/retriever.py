"""The serving path for one user at a time, all in one process: what the evaluation runs
over its users, the Serve app's fused deployment per request, and the reference the Serve
graph is tested against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from mtmh.retrieval.heads import HeadIndex, Searched, cover_k_ann
from mtmh.retrieval.merge import Candidate, Kept, Ordered, merge_order
from mtmh.retrieval.ranking import (
    Ranked,
    ann_order,
    blocked_items,
    preranker_order,
    preranker_reach,
)


class CandidateScorer(Protocol):
    """What the serving path needs of a preranker (mtmh/preranker/ranker.py `Preranker`)."""

    heads: tuple[str, ...]  # the heads whose lists it reads

    def score(
        self,
        searched: Searched,
        triggers: np.ndarray,
        blocked: np.ndarray,
        reach: Mapping[str, int | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """{head: [T, K] probabilities of the searched candidates, -inf where invalid or
        beyond the head's reach}."""
        ...


class Retriever:
    """The serving path for one user at a time, all in this process (the evaluation's)."""

    def __init__(
        self,
        heads: dict[str, HeadIndex],
        k_ann: int,
        keep: int,
        preranker: CandidateScorer | None = None,
        relevance_k_ann: int | None = None,
    ) -> None:
        """`relevance_k_ann`: how many of its nearest candidates the relevance head offers
        the preranker (`eval.relevance_k_ann_for`); None offers all K_ann."""
        if not heads:
            raise ValueError("a retriever needs at least one head")
        if preranker is not None and not set(preranker.heads) <= set(heads):
            raise ValueError(f"the preranker reads heads {preranker.heads}; got {sorted(heads)}")
        self.heads = heads
        self.preranker = preranker
        self.num_items = next(iter(heads.values())).vectors.shape[0]
        self.k_ann = min(k_ann, self.num_items)
        self.keep = keep
        self.relevance_k_ann = min(relevance_k_ann or self.k_ann, self.k_ann)
        for head in heads.values():
            cover_k_ann(head.index, self.k_ann, self.num_items)

    def search(self, triggers: np.ndarray, seen: Iterable[int] = ()) -> Searched:
        """{head: its K_ann candidates per trigger} of the ANN stage (`HeadIndex.candidates`;
        a cluster-partitioned head leaves `seen` out and says how each trigger's K are
        shared among its clusters)."""
        triggers = np.asarray(triggers, np.int64)
        blocked = blocked_items(self.num_items, seen)
        return {
            name: head.candidates(triggers, self.k_ann, self.keep, blocked)
            for name, head in self.heads.items()
        }

    def preranked(
        self, triggers: np.ndarray, seen: Iterable[int] = (), searched: Searched | None = None
    ) -> dict[str, Ordered]:
        """{head: per trigger, its ANN candidates by preranker probability, best first}; the
        merge (`merge`, order "preranker") cuts them to K. The relevance head's lists hold its
        `relevance_k_ann` nearest valid candidates only. The trigger itself and the `seen`
        items are never candidates."""
        if self.preranker is None:
            raise ValueError("this retriever has no preranker: use ann_ordered")
        triggers, seen = np.asarray(triggers, np.int64), list(seen)  # seen: read twice
        searched = searched if searched is not None else self.search(triggers, seen)
        blocked = blocked_items(self.num_items, seen)
        reach = {h: preranker_reach(h, self.relevance_k_ann, self.keep) for h in searched}
        scores = self.preranker.score(searched, triggers, blocked, reach)
        return {
            name: preranker_order(
                searched[name].ids, scores[name], triggers, blocked, reach[name], searched[name].cut
            )
            for name in self.preranker.heads
        }

    def ann_ordered(
        self, triggers: np.ndarray, seen: Iterable[int] = (), searched: Searched | None = None
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates in the head's similarity order}
        (no preranker). The same candidates `preranked` ranks, the same exclusions."""
        triggers, seen = np.asarray(triggers, np.int64), list(seen)  # seen: read twice
        searched = searched if searched is not None else self.search(triggers, seen)
        blocked = blocked_items(self.num_items, seen)
        return {
            name: ann_order(found.sims, found.ids, triggers, blocked, self.keep, found.cut)
            for name, found in searched.items()
        }

    def ordered(
        self,
        order: str,
        triggers: np.ndarray,
        seen: Iterable[int] = (),
        searched: Searched | None = None,
    ) -> Kept:
        """Each head's candidates in a ranking order: `preranked` ("preranker") or
        `ann_ordered` ("ann"), what `merge` takes with the same `order`."""
        if order == "preranker":
            return self.preranked(triggers, seen, searched)
        if order == "ann":
            return self.ann_ordered(triggers, seen, searched)
        raise ValueError(f"ranking order {order!r}: expected 'preranker' or 'ann'")

    def merge(self, kept: Kept, alpha: float, order: str = "ann") -> list[list[Candidate]]:
        """Per trigger, the K candidates of `order` ("preranker" or "ann") merged by alpha."""
        return merge_order(order, kept, self.keep, alpha)
