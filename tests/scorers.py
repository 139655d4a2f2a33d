"""Candidate scorers for tests: stand-ins for a trained preranker with a known preference."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mtmh.retrieval.heads import Searched


class FarthestFirst:
    """Prefers each trigger's least similar candidates: whatever a ranking keeps of them is
    the ranking's doing (its reach, its quotas), not the scorer's. Scores every candidate,
    the reach ignored."""

    def __init__(self, heads: tuple[str, ...] = ("engagement", "relevance")) -> None:
        self.heads = heads

    def score(
        self,
        searched: Searched,
        triggers: np.ndarray,
        blocked: np.ndarray,
        reach: Mapping[str, int | None] | None = None,
    ) -> dict[str, np.ndarray]:
        return {h: -found.sims for h, found in searched.items()}
