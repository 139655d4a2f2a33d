"""The serving path for one user at a time, all in one process: what the evaluation runs
over its users, the Serve app's fused deployment per request, and the reference the Serve
graph is tested against."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mtmh.preranker.model import PrerankerModel
from mtmh.retrieval.heads import HeadIndex, ann_k, cover_k_ann
from mtmh.retrieval.merge import Candidate, merge_heads
from mtmh.retrieval.ranking import (
    Ranked,
    blocked_items,
    rank_candidates,
    score_candidates,
    user_vector,
)


class Retriever:
    """The serving path for one user at a time, all in this process (the evaluation's)."""

    def __init__(
        self, heads: dict[str, HeadIndex], preranker: PrerankerModel, k_ann: int, keep: int
    ) -> None:
        if not heads:
            raise ValueError("a retriever needs at least one head")
        self.heads = heads
        self.preranker = preranker
        self.num_items = next(iter(heads.values())).vectors.shape[0]
        self.k_ann = min(k_ann, self.num_items)
        self.keep = keep
        for head in heads.values():
            cover_k_ann(head.index, self.k_ann, self.num_items)

    def search(self, triggers: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{head: (similarities [T, K], candidates [T, K])} of the ANN stage."""
        triggers = np.asarray(triggers, np.int64)
        return {
            name: head.search(triggers, ann_k(self.k_ann, self.num_items))
            for name, head in self.heads.items()
        }

    def preranked(
        self,
        history: np.ndarray,
        triggers: np.ndarray,
        seen: Iterable[int] = (),
        searched: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates by preranker score}. The trigger
        itself and the `seen` items are never candidates."""
        triggers = np.asarray(triggers, np.int64)
        searched = searched if searched is not None else self.search(triggers)
        users = user_vector(self.preranker, history).expand(len(triggers), -1)
        blocked = blocked_items(self.num_items, seen)
        out = {}
        for name, (_, cands) in searched.items():
            scores = score_candidates(self.preranker, users, cands)
            out[name] = rank_candidates(cands, scores, triggers, blocked, self.keep)
        return out

    def ann_ordered(
        self,
        triggers: np.ndarray,
        seen: Iterable[int] = (),
        searched: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates in the head's similarity order}
        (no preranker). The same candidates `preranked` ranks, the same exclusions."""
        triggers = np.asarray(triggers, np.int64)
        searched = searched if searched is not None else self.search(triggers)
        blocked = blocked_items(self.num_items, seen)
        return {
            name: rank_candidates(cands, sims.astype(np.float64), triggers, blocked, self.keep)
            for name, (sims, cands) in searched.items()
        }

    def merge(self, kept: dict[str, list[Ranked]], alpha: float) -> list[list[Candidate]]:
        return merge_heads(kept, self.keep, alpha)
