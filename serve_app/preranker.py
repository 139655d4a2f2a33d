"""The preranker deployment: scores each head's ANN candidates for the user and trigger and
keeps the K best per head and trigger (spec section 6, step 2). A run that serves in ANN order
(its evaluation found the preranker worse on validation) never calls it: the heads cut their
own candidates (serve_app/ann.py).

Concurrent requests are batched with `@serve.batch`: every request's candidate rows (every
head, every trigger) go through one forward pass per version (`Preranker.score_many`). The
features and the cut are the evaluation's own code, so Serve and the evaluation rank the same
candidates the same way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from ray import serve

from mtmh.preranker.ranker import Preranker as TrainedPreranker
from mtmh.retrieval.heads import HeadSearch
from mtmh.retrieval.merge import Ordered
from mtmh.retrieval.ranking import blocked_items, preranker_order, preranker_reach
from mtmh.serving.run import ServingRun
from serve_app.ann import VERSIONS_PER_REPLICA


@dataclass(frozen=True)
class PrerankJob:
    model_id: str  # the version the request is pinned to
    triggers: np.ndarray  # [T], most recent first
    searched: dict[str, HeadSearch]  # head -> its K_ann candidates per trigger
    seen: np.ndarray  # items never to return
    keep: int
    relevance_k_ann: int  # the relevance head's reach (`preranker_reach`)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class Preranker:
    def __init__(
        self, torch_threads: int = 1, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.002
    ) -> None:
        torch.set_num_threads(torch_threads)
        batched = cast(Any, self._batched)  # serve.batch adds the setters
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=VERSIONS_PER_REPLICA)
    async def model(self, model_id: str) -> TrainedPreranker:
        run = ServingRun.from_model_id(model_id)
        return await asyncio.to_thread(run.load_preranker)

    async def prerank(self, job: PrerankJob) -> dict[str, Ordered]:
        """{head: per trigger, its candidates by preranker probability, best first}; the
        ingress's merge cuts them to K (`merge_distinct`)."""
        return await self._batched(job)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _batched(self, jobs: list[PrerankJob]) -> list[dict[str, Ordered]]:
        out: list[dict[str, Ordered]] = [{} for _ in jobs]
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            by_version[job.model_id].append(i)
        for model_id, members in by_version.items():
            pre = await self.model(model_id)
            blocked = {i: blocked_items(pre.num_items, jobs[i].seen) for i in members}
            reach = {
                i: {h: preranker_reach(h, jobs[i].relevance_k_ann, jobs[i].keep) for h in pre.heads}
                for i in members
            }
            scores = pre.score_many(
                [(jobs[i].searched, jobs[i].triggers, blocked[i]) for i in members],
                [reach[i] for i in members],
            )
            for i, by_head in zip(members, scores, strict=True):
                job = jobs[i]
                out[i] = {
                    head: preranker_order(
                        job.searched[head].ids,
                        s,
                        job.triggers,
                        blocked[i],
                        reach[i][head],
                        job.searched[head].cut,
                    )
                    for head, s in by_head.items()
                }
        return out
