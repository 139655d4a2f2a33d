"""The preranker deployment: scores each head's ANN candidates for the user and keeps the K
best per head and trigger (spec section 6, step 2). A run that serves in ANN order (its
evaluation found the preranker worse on validation) never calls it: the heads cut their own
candidates (serve_app/ann.py).

Concurrent requests are batched with `@serve.batch`: their candidate rows (every head, every
trigger) go through one scoring call per version. The user vector is still computed per
request, exactly as the in-process evaluation does, so Serve and the evaluation rank the same
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

from mtmh.preranker.model import PrerankerModel
from mtmh.retrieval.merge import Ranked
from mtmh.retrieval.ranking import blocked_items, rank_candidates, score_candidates, user_vector
from mtmh.serving.run import ServingRun
from serve_app.ann import VERSIONS_PER_REPLICA


@dataclass(frozen=True)
class PrerankJob:
    model_id: str  # the version the request is pinned to
    history: np.ndarray  # oldest first
    triggers: np.ndarray  # [T]
    candidates: dict[str, np.ndarray]  # head -> [T, C] ANN candidates
    seen: np.ndarray  # items never to return
    keep: int


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class Preranker:
    def __init__(self, torch_threads: int = 1, max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.002) -> None:  # fmt: skip
        torch.set_num_threads(torch_threads)
        batched = cast(Any, self._batched)  # serve.batch adds the setters
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=VERSIONS_PER_REPLICA)
    async def model(self, model_id: str) -> PrerankerModel:
        run = ServingRun.from_model_id(model_id)
        return await asyncio.to_thread(run.load_preranker)

    async def prerank(self, job: PrerankJob) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best candidates by preranker score}."""
        return await self._batched(job)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _batched(self, jobs: list[PrerankJob]) -> list[dict[str, list[Ranked]]]:
        out: list[dict[str, list[Ranked]]] = [{} for _ in jobs]
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            by_version[job.model_id].append(i)
        for model_id, members in by_version.items():
            model = await self.model(model_id)
            # One scoring call for every (request, head, trigger) row of this version.
            rows = [(i, head) for i in members for head in jobs[i].candidates]
            user_of = {i: user_vector(model, jobs[i].history) for i in members}
            blocked_of = {i: blocked_items(model.num_items, jobs[i].seen) for i in members}
            user_rows = torch.cat([user_of[i].expand(len(jobs[i].triggers), -1) for i, _ in rows])
            cands = np.concatenate([jobs[i].candidates[head] for i, head in rows])
            scores = score_candidates(model, user_rows, cands)
            start = 0
            for i, head in rows:
                job = jobs[i]
                stop = start + len(job.triggers)
                out[i][head] = rank_candidates(
                    cands[start:stop], scores[start:stop], job.triggers, blocked_of[i], job.keep
                )
                start = stop
        return out
