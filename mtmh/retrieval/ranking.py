"""Cutting each head's K_ann candidates per trigger to K, in one of two orders:

- "preranker": the preranker's user-to-item score (spec section 6); the pool across triggers
  is ordered by it too.
- "ann": the head's own similarity order, no preranker; the pool across triggers sums each
  item's similarity over the triggers that retrieved it (the classic item-based CF rule).

A run's order is chosen by its evaluation on validation (`eval.ranking=auto`) and recorded in
RUN/eval/ranking.json; `resolved_ranking` reads it back for serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from mtmh.config import RunConfig
from mtmh.data.histories import recent_window
from mtmh.preranker.model import PrerankerModel
from mtmh.retrieval.merge import Ranked

RANKINGS = ("preranker", "ann")  # how each head's K_ann candidates are cut to its keep
RANKING_FILE = "ranking.json"  # RUN/eval/: the order the run serves, and why


def resolved_ranking(cfg: RunConfig, run_dir: Path) -> str:
    """The order a run serves: the config's, or what the evaluation chose on validation for
    `eval.ranking=auto` (the spec's preranker before any evaluation)."""
    if cfg.eval.ranking != "auto":
        return cfg.eval.ranking
    path = run_dir / "eval" / RANKING_FILE
    return str(json.loads(path.read_text())["chosen"]) if path.is_file() else "preranker"


def rank_rows(items: np.ndarray, scores: np.ndarray, keep: int) -> list[Ranked]:
    """Per row, the top `keep` valid (score > -inf) items by score, ties by smaller item id."""
    out = []
    for row_items, row_scores in zip(items, scores, strict=True):
        order = np.lexsort((row_items, -row_scores))
        ranked: Ranked = []
        for j in order:
            if not np.isfinite(row_scores[j]) or len(ranked) == keep:
                break
            ranked.append((int(row_items[j]), float(row_scores[j])))
        out.append(ranked)
    return out


def blocked_items(num_items: int, seen: Iterable[int]) -> np.ndarray:
    """[N + 1] mask of items that may not be candidates: `seen`, and the last slot for
    faiss's -1 (no result)."""
    blocked = np.zeros(num_items + 1, bool)
    blocked[list(seen)] = True
    blocked[num_items] = True
    return blocked


@torch.no_grad()
def user_vector(preranker: PrerankerModel, history: np.ndarray) -> torch.Tensor:
    """The preranker's [1, 2d] user vector of a history (item ids, oldest first)."""
    window = recent_window(np.asarray(history, np.int64), preranker.cfg.history_length)
    return preranker.user_vectors(torch.as_tensor(window)[None])


@torch.no_grad()
def score_candidates(
    preranker: PrerankerModel, users: torch.Tensor, cands: np.ndarray
) -> np.ndarray:
    """Preranker scores [R, C] of candidate rows `cands` [R, C] (faiss -1 allowed, scored as
    item 0 and masked later) for user vectors [R, 2d], one per row."""
    cand_t = torch.as_tensor(np.where(cands < 0, 0, cands))
    return preranker.score(users, cand_t).numpy().astype(np.float64)


def rank_candidates(
    cands: np.ndarray, scores: np.ndarray, triggers: np.ndarray, blocked: np.ndarray, keep: int
) -> list[Ranked]:
    """Per trigger, its `keep` best candidates by score; the trigger itself, blocked items and
    faiss's -1 are never candidates."""
    invalid = blocked[cands] | (cands == triggers[:, None])
    return rank_rows(cands, np.where(invalid, -np.inf, scores), keep)
