"""A retrieval request turned into exactly what the serving path computes, and its last step.

The Serve ingress and the in-process reference both plan requests here, so defaults (K, alpha,
the history standing in for a missing one, seen-item exclusion) and input checks are one
code path, and the same inputs give the same candidates on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mtmh.retrieval.merge import POOLING, Candidate, Kept, merge_order, pool_candidates
from mtmh.serving.partition import GLOBAL, SEARCH_STRATEGIES, PartitionSetting
from mtmh.serving.run import ServingRun


class RequestError(ValueError):
    """A request the served model cannot answer as asked (an HTTP 4xx)."""


class UnknownItemError(RequestError):
    """An item id outside the served catalog (an HTTP 404)."""


@dataclass(frozen=True)
class RetrievalPlan:
    triggers: np.ndarray  # [T] distinct, in request order
    history: np.ndarray  # the user's past items, oldest first (the seen items)
    seen: np.ndarray  # never returned
    keep: int  # K: candidates per head and trigger, and per merged trigger list
    alpha: float
    pool_top_k: int | None  # None: one trigger, return its merged list
    ranking: str = "preranker"  # the run's order: "preranker" or "ann" (similarity)
    partition: PartitionSetting | None = None  # divide and conquer; None: the global search

    @property
    def k(self) -> int:
        return self.keep if self.pool_top_k is None else self.pool_top_k


def plan_i2i(
    run: ServingRun,
    item_id: int,
    k: int | None = None,
    alpha: float | None = None,
    history: Sequence[int] | None = None,
    strategy: str | None = None,
    visit: int | None = None,
) -> RetrievalPlan:
    """K candidates for one trigger; the history defaults to the trigger alone. `strategy`
    and `visit`: a divide-and-conquer search (`partition_setting`)."""
    keep = run.keep if k is None else k
    if not 1 <= keep <= run.k_ann:
        raise RequestError(
            f"k={keep} is outside 1..{run.k_ann} (this model's K_ann ANN candidates per head)"
        )
    hist = [item_id] if history is None else list(history)
    plan = _plan(run, [item_id], hist, keep, alpha, None)
    return replace(plan, partition=partition_setting(run, strategy, visit))


def plan_retrieve(
    run: ServingRun,
    triggers: Sequence[int],
    k: int | None = None,
    alpha: float | None = None,
    history: Sequence[int] | None = None,
    strategy: str | None = None,
    visit: int | None = None,
) -> RetrievalPlan:
    """The evaluation protocol for one user: every trigger merged to the run's K, pooled to
    the top k (default the run's top_k). Triggers come most recent first, repeats dropped; the
    history defaults to the triggers, oldest first."""
    distinct = list(dict.fromkeys(triggers))
    if not distinct:
        raise RequestError("trigger_item_ids is empty")
    top_k = run.top_k if k is None else k
    if top_k < 1:
        raise RequestError(f"k={top_k} must be at least 1")
    hist = distinct[::-1] if history is None else list(history)
    plan = _plan(run, distinct, hist, run.keep, alpha, top_k)
    return replace(plan, partition=partition_setting(run, strategy, visit))


def partition_setting(
    run: ServingRun, strategy: str | None, visit: int | None
) -> PartitionSetting | None:
    """A request's search: None for the global one (no strategy, or "global"), else its
    merge strategy and clusters per trigger (default: the run's clusters.visit)."""
    if strategy is None or strategy == GLOBAL:
        if visit is not None:
            raise RequestError("visit applies to a divide-and-conquer strategy, not 'global'")
        return None
    if strategy not in SEARCH_STRATEGIES:
        raise RequestError(f"strategy={strategy!r}: expected one of {SEARCH_STRATEGIES}")
    if not run.num_clusters:
        raise RequestError(
            f"strategy={strategy!r}: model {run.version} has no clusters "
            "(ray_jobs/cluster_catalog.py makes them)"
        )
    visit = run.visit if visit is None else visit
    if not 1 <= visit <= run.num_clusters:
        raise RequestError(f"visit={visit} is outside 1..{run.num_clusters} (the run's clusters)")
    return PartitionSetting(strategy, visit)


def _plan(
    run: ServingRun,
    triggers: list[int],
    history: list[int],
    keep: int,
    alpha: float | None,
    pool_top_k: int | None,
) -> RetrievalPlan:
    alpha = run.alpha if alpha is None else float(alpha)
    if not 0.0 <= alpha <= 100.0:
        raise RequestError(f"alpha={alpha} is outside [0, 100]")
    unknown = sorted({i for i in (*triggers, *history) if not 0 <= i < run.num_items})
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise UnknownItemError(
            f"unknown item_id {shown}: model {run.version} has items 0..{run.num_items - 1}"
        )
    hist = np.asarray(history, np.int64)
    return RetrievalPlan(
        triggers=np.asarray(triggers, np.int64),
        history=hist,
        seen=hist if run.exclude_seen else np.zeros(0, np.int64),
        keep=keep,
        alpha=alpha,
        pool_top_k=pool_top_k,
        ranking=run.ranking,
    )


def merge_and_pool(kept: Kept, plan: RetrievalPlan) -> list[Candidate]:
    """Merge each trigger's ranked head lists to K by the quota (the run's ranking order's
    merge), then (multi-trigger requests) pool them to the top k the way that order pools."""
    per_trigger = merge_order(plan.ranking, kept, plan.keep, plan.alpha)
    if plan.pool_top_k is None:
        (only,) = per_trigger
        return only
    return pool_candidates(per_trigger, plan.pool_top_k, POOLING[plan.ranking])
