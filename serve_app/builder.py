"""The deployment graph: Ingress -> {AnnEngagement, AnnRelevance} -> Preranker -> Merger.

`build` is the application builder `serve_app/config.yaml` names (`import_path:
serve_app:build`, with `args`); `serve run serve_app:graph` builds the same graph from the
environment (see serve_app/__init__.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict
from ray.serve import Application, Deployment

from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from serve_app import ann, ingress, merger, preranker
from serve_app.ingress import ServedRun

# The @serve.deployment classes, typed as what the decorator made of them.
AnnHead = cast(Deployment, ann.AnnHead)
Preranker = cast(Deployment, preranker.Preranker)
Merger = cast(Deployment, merger.Merger)
Ingress = cast(Deployment, ingress.Ingress)


# Every deployment of the graph, by the name a Serve config addresses it with.
DEPLOYMENTS = ("Ingress", "AnnEngagement", "AnnRelevance", "Preranker", "Merger")


class GraphArgs(BaseModel):
    """Application arguments (`args:` in a Serve config)."""

    model_config = ConfigDict(extra="forbid")
    run_dir: str = "runs/ml-100k"  # made absolute here, where the graph is built
    model: str = "mtmh"
    use_gpu: bool = False  # FAISS search on the replica's GPU (faiss-gpu; give it num_gpus)
    faiss_threads: int = 1
    torch_threads: int = 1
    max_batch_size: int = 16  # preranker @serve.batch
    batch_wait_timeout_s: float = 0.002


def build(args: dict[str, Any] | GraphArgs) -> Application:
    a = GraphArgs.model_validate(args) if isinstance(args, dict) else args
    served = ServedRun(run_dir=str(Path(a.run_dir).resolve()), model=a.model)
    heads = {
        head: AnnHead.options(name=f"Ann{head.capitalize()}").bind(
            head, use_gpu=a.use_gpu, faiss_threads=a.faiss_threads
        )
        for head in (ENGAGEMENT, RELEVANCE)
    }
    pre = Preranker.bind(a.torch_threads, a.max_batch_size, a.batch_wait_timeout_s)
    return Ingress.options(user_config=served.model_dump()).bind(
        heads[ENGAGEMENT], heads[RELEVANCE], pre, Merger.bind()
    )
