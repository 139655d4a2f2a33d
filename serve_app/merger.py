"""The merge deployment: the quota merge of the two heads' preranked lists per trigger
(spec section 6, step 3), then, for a multi-trigger request, the evaluation's pooling."""

from __future__ import annotations

from ray import serve

from mtmh.retrieval.merge import Candidate, Ranked
from mtmh.serving.plan import RetrievalPlan, finish


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class Merger:
    def merge(self, kept: dict[str, list[Ranked]], plan: RetrievalPlan) -> list[Candidate]:
        return finish(kept, plan)
