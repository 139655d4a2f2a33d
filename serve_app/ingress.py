"""The HTTP ingress: validates requests, pins each to one model version, and answers them in
one of two modes (`GraphArgs.mode`):

- graph: fans out to the two ANN head deployments concurrently, then (a run served in
  preranker order) the preranker deployment; the ingress then merges and pools. The heads and
  the preranker scale on their own. The merge runs here, not in a deployment of its own: it
  is microseconds of work, and a hop between replicas costs milliseconds (docs/benchmarks.md).
- fused: the replica holds the whole serving path of its version (both heads' indexes, the
  preranker, the merge) and answers in process (`InProcessRetrieval`), with no hop beyond
  the ingress. For catalogs and latency budgets where fan-out does not pay: a replica then
  needs the memory of every head's index.

Model updates: the served run is this deployment's `user_config` (`{"run_dir": ...}`).
Changing it (`serve deploy` with a new run_dir is a lightweight update: replicas are
reconfigured in place, not restarted) opens the new run and swaps it in with one assignment.
A run with versions (`mtmh update`, mtmh/versions.py) is served at the version its
RUN/serving.json names, and each replica reads that file every `follow_s` seconds and swaps
the same way when a version is promoted or rolled back.
A request reads that reference once, at its start, and passes the version's `model_id` to every
downstream call, which Serve multiplexing routes to replicas holding that version (loading it
on first use). Requests in flight during a swap finish on the old version; none mixes two. In
fused mode the new version is loaded into the replica before the swap, and the old one is
freed when its last request finishes.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures'
# annotations at runtime to find the request bodies, and Serve's class-based routes do not
# resolve string annotations.
import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from mtmh.retrieval.merge import Candidate
from mtmh.serving.catalog import ItemCatalog, UnknownRawIdError
from mtmh.serving.inprocess import InProcessRetrieval
from mtmh.serving.partition import GLOBAL
from mtmh.serving.plan import (
    RequestError,
    RetrievalPlan,
    UnknownItemError,
    merge_and_pool,
    plan_i2i,
    plan_retrieve,
)
from mtmh.serving.run import ServingRun
from mtmh.versions import read_version, serving_version, version_dir
from serve_app.explore import explore_page, report_files, report_page
from serve_app.preranker import PrerankJob
from serve_app.schemas import (
    MAX_ITEMS_LISTED,
    CandidateOut,
    Health,
    I2IRequest,
    ItemOut,
    ItemsResponse,
    RetrievalResponse,
    RetrieveRequest,
)

log = logging.getLogger("ray.serve")

app = FastAPI(
    title="mtmh item-to-item retrieval",
    description="MTMH (Zhang et al., KDD 2025): two-head ANN retrieval, preranking and the "
    "alpha quota merge. Item ids are catalog ids (RUN/data/items.parquet).",
)


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 naming each field and what is wrong with it. FastAPI's default handler echoes the
    offending input back, and an input such as NaN cannot be written as JSON: that turned a
    bad request into a 500. Only location, message and type are returned."""
    errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


class ServedRun(BaseModel):
    """The Ingress deployment's user_config."""

    model_config = ConfigDict(extra="forbid")
    run_dir: str  # absolute, or relative to the replica's working directory
    model: str = "mtmh"
    # Seconds between reads of RUN/serving.json (mtmh/versions.py), whose promoted version
    # the replica swaps in as it would a new run_dir; 0: follow the user_config only.
    follow_s: float = Field(default=2.0, ge=0.0)


@dataclass(frozen=True)
class Live:
    """What a request is answered by: one version, its catalog (raw ids, titles), and in
    fused mode that version's whole serving path, loaded in this replica."""

    run: ServingRun
    catalog: ItemCatalog
    local: InProcessRetrieval | None = None
    clusters: list[int] | None = None  # every item's cluster, when the run has them
    number: int = 0  # the run's version number (RUN/serving.json); 0: the full run
    made_at: float | None = None  # when that version was made (epoch seconds)

    def item_ids(self, raw: list[str] | None, ids: list[int] | None) -> list[int] | None:
        """`ids` as given, or the catalog ids of `raw` (a 404 naming any unknown one)."""
        if raw is None:
            return ids
        try:
            return self.catalog.item_ids(raw)
        except UnknownRawIdError as err:
            raise HTTPException(
                404, f"{err}: not in the catalog of model {self.run.version}"
            ) from err


@dataclass(frozen=True)
class Downstream:
    """Graph mode's deployments, by handle."""

    heads: dict[str, DeploymentHandle]  # head name -> its ANN deployment
    preranker: DeploymentHandle


# Module functions the routes call are defined before the class: Serve serializes the
# ingress class when it is decorated, with the module globals that exist by then.
def _planned(make: Callable[..., RetrievalPlan], *args: Any) -> RetrievalPlan:
    try:
        return make(*args)
    except UnknownItemError as err:
        raise HTTPException(404, str(err)) from err
    except RequestError as err:
        raise HTTPException(422, str(err)) from err


def _parse_ids(text: str, num_items: int) -> list[int]:
    """Parse "3,17,42" to [3, 17, 42]: a 422 for a malformed list, a 404 naming unknown ids."""
    try:
        found = [int(part) for part in text.split(",")]
    except ValueError as err:
        raise HTTPException(422, f"ids must be comma-separated integers: {err}") from err
    if len(found) > MAX_ITEMS_LISTED:
        raise HTTPException(422, f"at most {MAX_ITEMS_LISTED} ids per request, got {len(found)}")
    unknown = [i for i in found if not 0 <= i < num_items]
    if unknown:
        raise HTTPException(
            404, f"unknown item_id {unknown[:10]}: the catalog has ids 0..{num_items - 1}"
        )
    return found


def _response(live: Live, merged: list[Candidate], plan: RetrievalPlan) -> RetrievalResponse:
    part = plan.partition
    return RetrievalResponse(
        model_version=live.run.version,
        alpha=plan.alpha,
        k=plan.k,
        strategy=GLOBAL if part is None else part.strategy,
        visit=None if part is None else part.visit,
        candidates=[
            CandidateOut(
                item_id=c.item_id,
                raw_id=live.catalog.raw_ids[c.item_id],
                score=c.score,
                head=c.head,
                cluster=None if live.clusters is None else live.clusters[c.item_id],
            )
            for c in merged
        ],
    )


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        engagement: DeploymentHandle | None = None,
        relevance: DeploymentHandle | None = None,
        preranker: DeploymentHandle | None = None,
        faiss_threads: int = 1,
        torch_threads: int = 1,
    ) -> None:
        """Graph mode with the three downstream handles; fused mode with none."""
        given = [h for h in (engagement, relevance, preranker) if h is not None]
        if len(given) not in (0, 3):
            raise ValueError(
                "the ingress takes all three downstream handles (graph) or none (fused)"
            )
        self.fused = not given
        self.graph = (
            None
            if self.fused
            else Downstream({"engagement": engagement, "relevance": relevance}, preranker)  # type: ignore[dict-item, arg-type]
        )
        self.live: Live | None = None
        self.served = ServedRun(run_dir="")
        self.swapping = threading.Lock()
        self.follower: threading.Thread | None = None
        if self.fused:
            import faiss
            import torch

            faiss.omp_set_num_threads(faiss_threads)
            torch.set_num_threads(torch_threads)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.served = ServedRun.model_validate(user_config)
        self._swap_to(serving_version(Path(self.served.run_dir).resolve()))
        if self.served.follow_s and not (self.follower and self.follower.is_alive()):
            self.follower = threading.Thread(target=self._follow, daemon=True)
            self.follower.start()

    def _swap_to(self, number: int) -> None:
        """Open version `number` of the served run and swap it in (one reference, read once
        by each request); a swap from the follower and one from reconfigure never
        interleave."""
        with self.swapping:
            served = self.served
            root = Path(served.run_dir).resolve()
            run = ServingRun.open(root, served.model, number)
            catalog = ItemCatalog.open(run.run_dir)
            local = InProcessRetrieval(run) if self.fused else None  # loaded before the swap
            old = self.live.run.version if self.live else None
            made_at = read_version(root, number).get("made_at")
            clusters = run.cluster_of_items()
            self.live = Live(run, catalog, local, clusters, number, made_at)  # the swap
        log.info(
            "serving %s (version %d) from %s (was %s, %s mode)",
            run.version,
            number,
            run.run_dir,
            old,
            "fused" if self.fused else "graph",
        )

    def _follow(self) -> None:
        """Swap in the version RUN/serving.json names whenever it changes. A version that
        fails to open is logged and tried again; the replica keeps answering from the one
        it has."""
        while self.served.follow_s:
            time.sleep(self.served.follow_s)
            try:
                root = Path(self.served.run_dir).resolve()
                target = serving_version(root)
                if self.live is None or version_dir(root, target) != self.live.run.run_dir:
                    self._swap_to(target)
            except Exception:
                log.exception("following %s/serving.json", self.served.run_dir)

    def _pin(self) -> Live:
        if self.live is None:
            raise HTTPException(503, "no run deployed: set the Ingress user_config run_dir")
        return self.live

    @app.get("/healthz")
    async def healthz(self) -> Health:
        live = self._pin()
        return Health(
            status="ok",
            model_version=live.run.version,
            run_dir=str(live.run.run_dir),
            num_items=live.run.num_items,
            num_clusters=live.run.num_clusters,
            visit=live.run.visit,
            version_number=live.number,
            version_made_at=live.made_at,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def explore(self) -> HTMLResponse:
        """The explore page: title search, a trigger's candidates, alpha and both heads."""
        return HTMLResponse(explore_page())

    @app.get("/report", response_class=HTMLResponse, include_in_schema=False)
    async def report(self) -> HTMLResponse:
        live = self._pin()
        return HTMLResponse(report_page(live.run.run_dir, live.run.version))

    @app.get("/report/files/{name:path}", include_in_schema=False)
    async def report_file(self, name: str) -> FileResponse:
        path = report_files(self._pin().run.run_dir).get(name)
        if path is None:
            raise HTTPException(404, f"no plot {name!r} in this run")
        return FileResponse(path, media_type="image/png")

    @app.get("/items")
    async def items(
        self,
        q: Annotated[str | None, Query(max_length=200, description="title substring")] = None,
        ids: Annotated[
            str | None, Query(max_length=20_000, description="comma-separated catalog ids")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_LISTED)] = 20,
    ) -> ItemsResponse:
        """Items by title search (`q`, most interacted first) or by catalog id (`ids`)."""
        live = self._pin()
        if (q is None) == (ids is None):
            raise HTTPException(422, "give exactly one of q or ids")
        if q is not None:
            found = live.catalog.search(q, limit)
        else:
            found = _parse_ids(ids or "", len(live.catalog))
        return ItemsResponse(items=[ItemOut(**vars(i)) for i in live.catalog.describe(found)])

    @app.post("/i2i")
    async def i2i(self, req: I2IRequest) -> RetrievalResponse:
        """The K candidates for one trigger item, with the head each came from."""
        live = self._pin()
        (item,) = (
            live.item_ids(
                None if req.raw_id is None else [req.raw_id],
                None if req.item_id is None else [req.item_id],
            )
            or []
        )
        history = live.item_ids(req.user_history_raw_ids, req.user_history)
        plan = _planned(
            plan_i2i, live.run, item, req.k, req.alpha, history, req.strategy, req.visit
        )
        return _response(live, await self._answer(live, plan), plan)

    @app.post("/retrieve")
    async def retrieve(self, req: RetrieveRequest) -> RetrievalResponse:
        """A user's candidates over all their triggers: each trigger retrieved and merged to
        the run's K, then pooled (best score per item) to the top k, as the evaluation does."""
        live = self._pin()
        triggers = live.item_ids(req.trigger_raw_ids, req.trigger_item_ids) or []
        history = live.item_ids(req.user_history_raw_ids, req.user_history)
        plan = _planned(
            plan_retrieve, live.run, triggers, req.k, req.alpha, history, req.strategy, req.visit
        )
        return _response(live, await self._answer(live, plan), plan)

    async def _answer(self, live: Live, plan: RetrievalPlan) -> list[Candidate]:
        if live.local is not None:
            # Fused: about a millisecond of CPU work, done on this replica's own loop; a
            # thread hand-off would cost a good part of that again.
            return live.local.answer(plan)
        graph = self.graph
        assert graph is not None  # graph mode: built with its three handles
        run = live.run
        pinned = {
            head: handle.options(multiplexed_model_id=run.model_id)
            for head, handle in graph.heads.items()
        }
        part = plan.partition  # divide and conquer: each head searches its clusters
        # Both heads are asked before either is awaited: they search concurrently.
        if plan.ranking == "ann":  # each head cuts its own candidates: no preranker hop
            tops = [
                h.top.remote(plan.triggers, run.k_ann, plan.seen, plan.keep, part)
                for h in pinned.values()
            ]
            kept = dict(zip(pinned, await asyncio.gather(*tops), strict=True))
            return merge_and_pool(kept, plan)
        searches = [
            h.search.remote(plan.triggers, run.k_ann, plan.seen, plan.keep, part)
            for h in pinned.values()
        ]
        found = dict(zip(pinned, await asyncio.gather(*searches), strict=True))
        job = PrerankJob(
            model_id=run.model_id,
            triggers=plan.triggers,
            searched=found,
            seen=plan.seen,
            keep=plan.keep,
            relevance_k_ann=run.relevance_k_ann,
        )
        pre = graph.preranker.options(multiplexed_model_id=run.model_id)
        return merge_and_pool(await pre.prerank.remote(job), plan)
