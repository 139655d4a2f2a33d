"""The Serve app's computation in one process, with the evaluation's `Retriever`: what a
fused-mode replica answers with, the reference the graph mode is tested against, and the
baseline of bench/serve_load.py.

Example:
    ref = InProcessRetrieval(ServingRun.open(Path("runs/ml-100k")))
    ref.answer(plan_i2i(ref.run, item_id=10, alpha=50))   # [Candidate, ...]
"""

from __future__ import annotations

from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.merge import Candidate, Kept
from mtmh.retrieval.retriever import Retriever
from mtmh.serving.plan import RetrievalPlan, merge_and_pool
from mtmh.serving.run import SERVED_HEADS, ServingRun


class InProcessRetrieval:
    def __init__(self, run: ServingRun) -> None:
        self.run = run
        self.heads = {head: run.load_head(head) for head in SERVED_HEADS}
        self.partitions = {head: run.load_partition(head) for head in SERVED_HEADS}
        self.preranker = run.load_preranker()

    def answer(self, plan: RetrievalPlan) -> list[Candidate]:
        heads: dict[str, HeadIndex] = dict(self.heads)
        if plan.partition is not None:  # divide and conquer (planning checked the clusters)
            heads = {}
            for head, part in self.partitions.items():
                assert part is not None
                heads[head] = part.searcher(plan.partition)
        retriever = Retriever(
            heads, self.run.k_ann, plan.keep, self.preranker, self.run.relevance_k_ann
        )
        kept: Kept
        if plan.ranking == "ann":
            kept = retriever.ann_ordered(plan.triggers, plan.seen)
        else:
            kept = retriever.preranked(plan.triggers, plan.seen)
        return merge_and_pool(kept, plan)
