"""One head's ANN search: item-embedding lookup of the triggers plus a FAISS search.

The same class is deployed once per head (`AnnHead.options(name="AnnEngagement")`), so each
head scales on its own. Indexes are per version: Serve's model multiplexing routes a request
to a replica that already holds its version and loads it on first use, keeping the previous
version too, so requests pinned to it before a swap still finish on it.

Two calls, one per ranking order of the run (mtmh/retrieval/ranking.py):
- `search`: the K_ann candidates and their similarities, for the preranker to score;
- `top`: a run served in ANN order needs no preranker, so the head cuts its own candidates
  to K by similarity and returns only those: one hop, and K rather than K_ann per trigger.

A divide-and-conquer request (`setting`, mtmh/serving/partition.py) searches the head's
per-cluster indexes, held in the same replica beside the global one: the same K_ann per
trigger, with the seen items left out and the cut that shares each trigger's K among its
clusters, for either order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from ray import serve

from mtmh.retrieval.heads import HeadIndex, HeadSearch
from mtmh.retrieval.merge import Ranked
from mtmh.retrieval.ranking import ann_order, blocked_items
from mtmh.serving.partition import PartitionSetting, ServedPartition
from mtmh.serving.run import ServingRun

VERSIONS_PER_REPLICA = 2  # the serving version and the one before it, during a swap


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class AnnHead:
    def __init__(self, head: str, use_gpu: bool = False, faiss_threads: int = 1) -> None:
        import faiss

        faiss.omp_set_num_threads(faiss_threads)
        self.head = head
        self.use_gpu = use_gpu

    @serve.multiplexed(max_num_models_per_replica=VERSIONS_PER_REPLICA)
    async def index(self, model_id: str) -> VersionHead:
        run = ServingRun.from_model_id(model_id)
        head = await asyncio.to_thread(run.load_head, self.head, self.use_gpu)
        return VersionHead(run, self.head, head)

    async def _loaded(self, setting: PartitionSetting | None) -> VersionHead:
        loaded = await self.index(serve.get_multiplexed_model_id())
        if setting is not None:  # the per-cluster indexes, built off the event loop once
            await asyncio.to_thread(loaded.partition)
        return loaded

    async def search(
        self,
        triggers: np.ndarray,
        k_ann: int,
        seen: np.ndarray,
        keep: int,
        setting: PartitionSetting | None = None,
    ) -> HeadSearch:
        """The head's K_ann candidates per trigger (`HeadIndex.candidates`), for the
        preranker to score."""
        loaded = await self._loaded(setting)
        return loaded.search(triggers, k_ann, seen, keep, setting)

    async def top(
        self,
        triggers: np.ndarray,
        k_ann: int,
        seen: np.ndarray,
        keep: int,
        setting: PartitionSetting | None = None,
    ) -> list[Ranked]:
        """Per trigger, its `keep` most similar of the K_ann searched candidates; the trigger,
        `seen` items and faiss's -1 excluded (the evaluation's ANN order and scores)."""
        loaded = await self._loaded(setting)
        found = loaded.search(triggers, k_ann, seen, keep, setting)
        blocked = blocked_items(len(loaded.head.vectors), seen)
        return ann_order(found.sims, found.ids, triggers, blocked, keep, found.cut)


@dataclass
class VersionHead:
    """One version's head in a replica: its global index and, from the first
    divide-and-conquer request on, its per-cluster indexes. A replica that never gets one
    never holds them (they copy the head's vectors twice: 1 GB at 1M x 128)."""

    run: ServingRun
    name: str
    head: HeadIndex
    _partition: ServedPartition | None = None

    def partition(self) -> ServedPartition:
        if self._partition is None:
            part = self.run.load_partition(self.name)
            if part is None:  # the ingress plans against the run: it has clusters
                raise ValueError(f"{self.run.version} has no clusters to search")
            self._partition = part
        return self._partition

    def search(
        self,
        triggers: np.ndarray,
        k_ann: int,
        seen: np.ndarray,
        keep: int,
        setting: PartitionSetting | None,
    ) -> HeadSearch:
        head = self.head if setting is None else self.partition().searcher(setting)
        blocked = blocked_items(len(self.head.vectors), seen)
        return head.candidates(triggers, k_ann, keep, blocked)
