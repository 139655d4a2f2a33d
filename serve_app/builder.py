"""The Serve application, in one of two modes (`args.mode`):

- graph: Ingress -> {AnnEngagement, AnnRelevance} -> Preranker, each deployment scaled on
  its own, the merge in the ingress (serve_app/config.yaml);
- fused: one deployment, Fused, answering in process (serve_app/config_fused.yaml).

`build` is the application builder both configs name (`import_path: serve_app:build`, with
`args`); `serve run serve_app:graph` builds the graph from the environment (MTMH_RUN, and
MTMH_SERVE_MODE=fused for the fused mode; see serve_app/__init__.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict
from ray.serve import Application, Deployment

from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from serve_app import ann, ingress, preranker
from serve_app.ingress import ServedRun

# The @serve.deployment classes, typed as what the decorator made of them.
AnnHead = cast(Deployment, ann.AnnHead)
Preranker = cast(Deployment, preranker.Preranker)
Ingress = cast(Deployment, ingress.Ingress)


# Every deployment of each mode, by the name a Serve config addresses it with.
DEPLOYMENTS = ("Ingress", "AnnEngagement", "AnnRelevance", "Preranker")
FUSED_DEPLOYMENTS = ("Fused",)
INGRESS_NAME = {"graph": "Ingress", "fused": "Fused"}  # the deployment holding user_config


class GraphArgs(BaseModel):
    """Application arguments (`args:` in a Serve config)."""

    model_config = ConfigDict(extra="forbid")
    run_dir: str = "runs/ml-100k"  # made absolute here, where the graph is built
    model: str = "mtmh"
    mode: Literal["graph", "fused"] = "graph"
    use_gpu: bool = False  # FAISS search on the replica's GPU (faiss-gpu; give it num_gpus)
    faiss_threads: int = 1
    torch_threads: int = 1
    max_batch_size: int = 16  # preranker @serve.batch
    # How long a preranker batch waits for more requests once it has one. 0: it takes what is
    # queued and goes, so a lone request never waits; under load, batches still form from
    # requests that queued while the previous batch ran.
    batch_wait_timeout_s: float = 0.0


def build(args: dict[str, Any] | GraphArgs) -> Application:
    a = GraphArgs.model_validate(args) if isinstance(args, dict) else args
    served = ServedRun(run_dir=str(Path(a.run_dir).resolve()), model=a.model)
    if a.mode == "fused":
        return Ingress.options(name="Fused", user_config=served.model_dump()).bind(
            faiss_threads=a.faiss_threads, torch_threads=a.torch_threads
        )
    heads = {
        head: AnnHead.options(name=f"Ann{head.capitalize()}").bind(
            head, use_gpu=a.use_gpu, faiss_threads=a.faiss_threads
        )
        for head in (ENGAGEMENT, RELEVANCE)
    }
    pre = Preranker.bind(a.torch_threads, a.max_batch_size, a.batch_wait_timeout_s)
    return Ingress.options(user_config=served.model_dump()).bind(
        heads[ENGAGEMENT], heads[RELEVANCE], pre
    )
