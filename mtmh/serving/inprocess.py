"""The Serve app's computation in one process, with the evaluation's `Retriever`: what a
fused-mode replica answers with, the reference the graph mode is tested against, and the
baseline of bench/serve_load.py.

Example:
    ref = InProcessRetrieval(ServingRun.open(Path("runs/ml-100k")))
    ref.answer(plan_i2i(ref.run, item_id=10, alpha=50))   # [Candidate, ...]
"""

from __future__ import annotations

from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.merge import Candidate
from mtmh.retrieval.retriever import Retriever
from mtmh.serving.partition import ServedPartition
from mtmh.serving.plan import RetrievalPlan, merge_and_pool
from mtmh.serving.run import SERVED_HEADS, ServingRun


class InProcessRetrieval:
    def __init__(self, run: ServingRun) -> None:
        self.run = run
        self.heads = {head: run.load_head(head) for head in SERVED_HEADS}
        # Per-cluster indexes, built on the first divide-and-conquer request.
        self.partitions: dict[str, ServedPartition] = {}
        self.preranker = run.load_preranker()

    def partition(self, head: str) -> ServedPartition:
        if head not in self.partitions:
            part = self.run.load_partition(head)
            if part is None:  # planning checks the run has clusters
                raise ValueError(f"{self.run.version} has no clusters to search")
            self.partitions[head] = part
        return self.partitions[head]

    def answer(self, plan: RetrievalPlan) -> list[Candidate]:
        heads: dict[str, HeadIndex] = dict(self.heads)
        if plan.partition is not None:  # divide and conquer
            heads = {h: self.partition(h).searcher(plan.partition) for h in SERVED_HEADS}
        retriever = Retriever(
            heads, self.run.k_ann, plan.keep, self.preranker, self.run.relevance_k_ann
        )
        return merge_and_pool(retriever.ordered(plan.ranking, plan.triggers, plan.seen), plan)
