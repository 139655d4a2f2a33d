"""The HTTP API's request and response bodies (pydantic; FastAPI turns them into /docs).

Items are named by the catalog's dense ids (`item_id` in RUN/data/items.parquet, 0..N-1)
or by the dataset's own ids (`raw_id`, e.g. a MovieLens movie id): each request takes one
form or the other. Each candidate carries both. The static bounds below reject oversized
or malformed bodies with a 422 before any work is done; bounds that depend on the served run
(the catalog, K_ann) are checked by the ingress against the version a request is pinned to.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

MAX_K = 1_000  # candidates per response
MAX_TRIGGERS = 200  # trigger items per /retrieve request
MAX_HISTORY = 1_000  # history items per request (items the answer leaves out)

ItemId = Annotated[StrictInt, Field(ge=0, description="catalog item id (0..N-1)")]
Alpha = Annotated[
    float,
    Field(
        ge=0.0,
        le=100.0,
        allow_inf_nan=False,
        description="engagement head's share of K, percent; default: the run's eval.alpha",
    ),
]
RawId = Annotated[
    StrictStr, Field(min_length=1, max_length=256, description="the dataset's own item id (raw_id)")
]
K = Annotated[StrictInt, Field(ge=1, le=MAX_K)]
History = Annotated[
    list[ItemId],
    Field(
        max_length=MAX_HISTORY, description="the user's past items, oldest first (never returned)"
    ),
]


Strategy = Annotated[
    Literal["global", "score", "affinity", "uniform"],
    Field(
        description="global: one nearest-neighbour search per head (the default); score, "
        "affinity, uniform: divide and conquer, the run's clusters searched one by one and "
        "merged by that strategy (docs/architecture.md)"
    ),
]
Visit = Annotated[
    StrictInt,
    Field(ge=1, le=1024, description="clusters per trigger; default: the run's clusters.visit"),
]


RawHistory = Annotated[
    list[RawId], Field(max_length=MAX_HISTORY, description="user_history by raw_id")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def _one_of(self, *names: str, required: bool = True) -> None:
        given = [n for n in names if getattr(self, n) is not None]
        if len(given) > 1 or (required and not given):
            raise ValueError(
                f"give {'exactly' if required else 'at most'} one of {' or '.join(names)}"
            )


class I2IRequest(_Request):
    item_id: ItemId | None = None
    raw_id: RawId | None = None
    k: K | None = Field(default=None, description="default: the run's K (eval.keep_per_head)")
    alpha: Alpha | None = None
    strategy: Strategy | None = None
    visit: Visit | None = None
    user_history: History | None = Field(
        default=None, description="default: the item alone; seen items are never returned"
    )
    user_history_raw_ids: RawHistory | None = None

    @model_validator(mode="after")
    def _one_form(self) -> I2IRequest:
        self._one_of("item_id", "raw_id")
        self._one_of("user_history", "user_history_raw_ids", required=False)
        return self


class RetrieveRequest(_Request):
    trigger_item_ids: list[ItemId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TRIGGERS,
        description="the user's trigger items, most recent first; repeats are dropped",
    )
    trigger_raw_ids: list[RawId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TRIGGERS,
        description="trigger_item_ids by raw_id",
    )
    k: K | None = Field(default=None, description="default: the run's eval.top_k")
    alpha: Alpha | None = None
    strategy: Strategy | None = None
    visit: Visit | None = None
    user_history: History | None = Field(
        default=None, description="default: the triggers, oldest first"
    )
    user_history_raw_ids: RawHistory | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RetrieveRequest:
        self._one_of("trigger_item_ids", "trigger_raw_ids")
        self._one_of("user_history", "user_history_raw_ids", required=False)
        return self


class CandidateOut(BaseModel):
    item_id: int
    raw_id: str
    score: float  # preranker score
    head: str  # "engagement" or "relevance": the head whose list it was taken from
    cluster: int | None = None  # the item's cluster (None: the run has no clusters)


class RetrievalResponse(BaseModel):
    model_version: str  # one version answered the whole request
    alpha: float
    k: int
    strategy: str  # "global", or the divide-and-conquer merge strategy
    visit: int | None  # clusters per trigger (None: global)
    candidates: list[CandidateOut]


class ItemOut(BaseModel):
    item_id: int
    raw_id: str
    title: str  # the first line of the item's text, else its raw id
    topics: list[str]  # topic labels (display only: no model reads them)
    interactions: int


class ItemsResponse(BaseModel):
    items: list[ItemOut]


MAX_ITEMS_LISTED = 200  # /items: search results and ids per request


class Health(BaseModel):
    status: str
    model_version: str
    run_dir: str
    num_items: int
    num_clusters: int  # 0: no divide-and-conquer search
    visit: int  # clusters per trigger by default
    version_number: int = 0  # the run's served version (RUN/serving.json); 0: the full run
    version_made_at: float | None = None  # when it was made, epoch seconds
