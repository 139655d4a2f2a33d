"""Cutting each head's K_ann candidates per trigger to K, in one of two orders:

- "preranker": the model's preranker (mtmh/preranker/) scores every candidate for the user and
  its trigger as a probability of engagement. Each trigger keeps the K most probable that no
  more recent trigger kept (mtmh/retrieval/merge.py `merge_distinct`), and the pool ranks
  them by probability. The relevance head offers only its `eval.relevance_k_ann` nearest
  candidates: an engagement preranker given the whole K_ann picks popular items the head
  found far from the trigger.
- "ann": the head's own similarity order, no preranker. The pool adds each item's similarity
  over the triggers that kept it (the classic item-based CF rule), as a share of each list's
  best similarity and never below zero: two heads' similarities live on different scales, and
  a peer's item-item weights (EASE) can be negative, so raw values cannot be summed.

A run's order is chosen by its evaluation on validation (`eval.ranking=auto`) and recorded in
RUN/eval/ranking.json; `resolved_ranking` reads it back for serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, cast

import numpy as np

from mtmh.config import RunConfig
from mtmh.retrieval.merge import RELEVANCE, Ordered, Ranked
from mtmh.retrieval.quotas import QuotaCut

Ranking = Literal["preranker", "ann"]
# How each head's K_ann candidates are cut to its keep.
RANKINGS: tuple[Ranking, ...] = ("preranker", "ann")
RANKING_FILE = "ranking.json"  # RUN/eval/: the order the run serves, and why


def resolved_ranking(cfg: RunConfig, run_dir: Path) -> Ranking:
    """The order a run serves: the config's, or what the evaluation chose on validation for
    `eval.ranking=auto` (the spec's preranker before any evaluation)."""
    if cfg.eval.ranking != "auto":
        return cfg.eval.ranking
    path = run_dir / "eval" / RANKING_FILE
    chosen = json.loads(path.read_text())["chosen"] if path.is_file() else "preranker"
    if chosen not in RANKINGS:
        raise ValueError(f"{path}: chosen order {chosen!r} is none of {RANKINGS}")
    return cast(Ranking, chosen)


def rank_rows(items: np.ndarray, scores: np.ndarray, keep: int) -> list[Ranked]:
    """Per row, the top `keep` valid (finite score) items by score, ties by smaller item id."""
    return first_ranked(score_order(items, scores, np.isfinite(scores)), keep)


def first_ranked(ordered: Ordered, keep: int) -> list[Ranked]:
    """Each row's first `keep` (item, score) pairs, as Python numbers."""
    return [list(zip(ids[:keep].tolist(), s[:keep].tolist(), strict=True)) for ids, s in ordered]


def blocked_items(num_items: int, seen: Iterable[int]) -> np.ndarray:
    """[N + 1] mask of items that may not be candidates: `seen`, and the last slot for
    faiss's -1 (no result)."""
    blocked = np.zeros(num_items + 1, bool)
    blocked[np.asarray(list(seen), np.int64)] = True
    blocked[num_items] = True
    return blocked


def valid_mask(cands: np.ndarray, triggers: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """[T, K]: candidates that may be returned: not blocked (faiss's -1 indexes the last,
    always blocked, slot) and not the trigger itself."""
    return ~blocked[cands] & (cands != np.asarray(triggers)[:, None])


def rank_candidates(
    cands: np.ndarray, scores: np.ndarray, triggers: np.ndarray, blocked: np.ndarray, keep: int
) -> list[Ranked]:
    """Per trigger, its `keep` best candidates by score; the trigger itself, blocked items and
    faiss's -1 are never candidates."""
    valid = valid_mask(cands, triggers, blocked)
    return rank_rows(cands, np.where(valid, scores, -np.inf), keep)


def preranker_reach(head: str, relevance_k_ann: int, keep: int) -> int | None:
    """How many of a head's nearest valid candidates its preranker may choose from: the
    relevance head's `eval.relevance_k_ann` (never below K), every other head's whole list."""
    return max(relevance_k_ann, keep) if head == RELEVANCE else None


def within_reach(valid: np.ndarray, reach: int | None) -> np.ndarray:
    """[T, K] valid candidates -> those among each row's first `reach` valid ones (all of them
    when `reach` is None). The lists are in similarity order, so these are the nearest."""
    return valid if reach is None else valid & (np.cumsum(valid, axis=1) <= reach)


def score_order(cands: np.ndarray, scores: np.ndarray, valid: np.ndarray) -> Ordered:
    """Per row, its `valid` candidates by score, best first (ties by item id)."""
    ids, s = cands.astype(np.int64), scores.astype(np.float64)
    order = np.lexsort((ids, -s, ~valid), axis=-1)  # every row at once, its valid ones first
    ids, s = np.take_along_axis(ids, order, axis=1), np.take_along_axis(s, order, axis=1)
    return [(ids[r, :n], s[r, :n]) for r, n in enumerate(valid.sum(axis=1).tolist())]


def preranker_order(
    cands: np.ndarray,
    probs: np.ndarray,
    triggers: np.ndarray,
    blocked: np.ndarray,
    reach: int | None = None,
    cut: QuotaCut | None = None,
) -> Ordered:
    """Per trigger, every valid candidate by preranker probability, best first (ties by item
    id); with `reach`, only the trigger's `reach` nearest valid candidates (the list is in
    similarity order). The cut to K happens in the merge (`merge_distinct`): each trigger
    takes its K best that no more recent trigger's merged list holds. A partitioned head's
    `cut` puts each cluster's quota of the K first."""
    valid = within_reach(valid_mask(cands, triggers, blocked), reach)
    ordered = score_order(cands, probs, valid & np.isfinite(probs))
    return cut.apply(ordered) if cut is not None else ordered


def ann_order(
    sims: np.ndarray,
    cands: np.ndarray,
    triggers: np.ndarray,
    blocked: np.ndarray,
    keep: int,
    cut: QuotaCut | None = None,
) -> list[Ranked]:
    """Per trigger, its `keep` most similar valid candidates (a partitioned head's `cut`:
    each cluster's quota of them), each scored by its similarity as a share of the list's
    best, clipped at zero (the scale-free score ANN order pools)."""
    valid = valid_mask(cands, triggers, blocked) & np.isfinite(sims)
    ordered = score_order(cands, sims, valid)
    ranked = first_ranked(cut.apply(ordered) if cut is not None else ordered, keep)
    out = []
    for row in ranked:
        best = row[0][1] if row and row[0][1] > 0 else 1.0
        out.append([(item, max(score, 0.0) / best) for item, score in row])
    return out
