"""Every stage of a run, in order, each skipped when its artifact is current.

    prepare -> encode -> peers -> train (every variant; concurrently) -> indexes -> prerankers
    (one per model) -> evaluate

The stages that need nothing a training makes (the peers, the content index, the prerankers
of the peers and of the content encoder) run in a driver thread beside the trainings, from
when the trainings leave a core idle; the evaluation, the first stage that reads them, waits
for them.

A stage is current when its marker file (`stage.json` in its artifact directory) holds the
same key: a hash of the config sections the stage reads and of the keys of the stages it
depends on. Changing `model.w_r` therefore redoes the trainings, their indexes and the
evaluation, but not prepare or encode. `force=True` redoes everything.

Example:
    run_pipeline(load_config(overrides=["data.dataset=ml-100k"]), Path("runs/ml-100k"))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mtmh.clusters.build import build_clusters
from mtmh.config import ConfigError, RunConfig, VariantName, config_to_dict, save_config
from mtmh.content.encode import encode_content
from mtmh.data.prepare import prepare
from mtmh.embeddings import CONTENT_SOURCE
from mtmh.eval.content_quality import content_topic_match
from mtmh.eval.evaluate import evaluate_run
from mtmh.index.build import build_indexes
from mtmh.model.slots import train_in_slots
from mtmh.model.training import train_variant
from mtmh.model.variants import get_variant
from mtmh.peers.build import PEERS, build_peers
from mtmh.preranker.features import feature_names
from mtmh.preranker.train import fit_prerankers
from mtmh.stage_board import StageBoard

log = logging.getLogger(__name__)
MARKER = "stage.json"
FRESH_VARIANTS = ("mtmh", "itemcf")  # the two curves of the fresh-content analysis


def stage_key(*parts: Any) -> str:
    blob = json.dumps([artifact_fields(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Knobs that change how fast or where a stage runs, never what it produces: left out of the
# stage keys, so resizing a job does not redo its artifacts.
RESOURCE_FIELDS = frozenset(
    {
        "cpus",
        "threads",
        "actor_cpus",
        "actor_threads",
        "actors_min",
        "actors_max",
        "cpus_per_worker",
        "threads_per_worker",
        "data_cpus",
        "report_every",
        "checkpoint_every",
        "max_failures",
        "build_cpus",
        "build_threads",
    }
)


def artifact_fields(section: Any) -> Any:
    """A config section as a dict without its RESOURCE_FIELDS (recursively)."""
    if dataclasses.is_dataclass(section):
        section = config_to_dict(section)
    if isinstance(section, dict):
        return {k: artifact_fields(v) for k, v in section.items() if k not in RESOURCE_FIELDS}
    return section


@dataclass
class Stage:
    name: str
    key: str
    folder: Path  # the artifact directory; its stage.json records the key
    run: Callable[[], Any] = field(repr=False)
    # Needs nothing a training makes, and only the evaluation reads it: it runs in a driver
    # thread beside the trainings, from when they leave a core idle, and beside the trained
    # models' index and preranker stages (`_Beside`; its BLAS, FAISS and torch work releases
    # the GIL, so the driver's loop is not held up).
    beside: bool = False

    def current(self) -> bool:
        marker = self.folder / MARKER
        return marker.is_file() and json.loads(marker.read_text()).get("key") == self.key

    def execute(self) -> float:
        """Run the stage and mark it current; returns its seconds."""
        log.info("stage %s: starting", self.name)
        started = time.perf_counter()
        self.run()
        seconds = time.perf_counter() - started
        self.mark(seconds)
        log.info("stage %s: done in %.1f s", self.name, seconds)
        return seconds

    def marked_seconds(self) -> float | None:
        """The seconds its marker recorded (a training's: since the trainings began)."""
        marker = self.folder / MARKER
        return json.loads(marker.read_text()).get("seconds") if marker.is_file() else None

    def mark(self, seconds: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "stage": self.name,
            "key": self.key,
            "seconds": round(seconds, 1),
            "finished_at": time.time(),
        }
        (self.folder / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def variant_config(cfg: RunConfig, variant: VariantName) -> RunConfig:
    """The run config for one variant's training: fresh snapshots (train.fresh_snapshot_every)
    for the analysis pair only."""
    train = cfg.train
    if variant not in FRESH_VARIANTS:
        train = dataclasses.replace(train, fresh_snapshot_every=None)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, variant=variant), train=train
    )


def plan(cfg: RunConfig, run_dir: Path) -> list[Stage]:
    """The stages of a run with their keys, in dependency order."""
    k_prep = stage_key("prepare", cfg.data, cfg.seed)
    k_enc = stage_key("encode", k_prep, cfg.content)
    variants = list(cfg.pipeline.variants)
    configs = {v: variant_config(cfg, v) for v in variants}
    content_clusters = cfg.clusters.source == CONTENT_SOURCE
    k_train = _train_keys(
        cfg, configs, k_enc, _clusters_key(cfg, k_enc) if content_clusters else None
    )
    ec = cfg.eval
    neighbours = (ec.k_ann, ec.k_ann_max_catalog_fraction, ec.keep_per_head, ec.max_triggers)
    k_peers = stage_key("peers", k_prep, cfg.holdout, cfg.peers, *neighbours)
    stages = [
        Stage("prepare", k_prep, run_dir / "data", lambda: prepare(cfg, run_dir)),
        Stage("encode", k_enc, run_dir / "content", lambda: _encode(cfg, run_dir)),
        Stage("peers", k_peers, run_dir / "peers", lambda: build_peers(cfg, run_dir), True),
    ]
    # The clusters come from the content embeddings (right after encode) or from a trained
    # head (after the trainings).
    trained: dict[str, str] = {str(v): key for v, key in k_train.items()}
    clusters = _clusters_stage(cfg, run_dir, k_enc, trained)
    if content_clusters:
        stages.insert(2, clusters)
    k_index = {
        source: stage_key("index", key, cfg.index, cfg.seed)
        for source, key in [(CONTENT_SOURCE, k_enc), *k_train.items()]
    }
    stages += _searched_without_training(cfg, run_dir, k_peers, k_index[CONTENT_SOURCE])
    for v in variants:
        stages.append(
            Stage(
                f"train:{v}",
                k_train[v],
                run_dir / "models" / v,
                lambda v=v: train_variant(configs[v], run_dir),  # type: ignore[misc]
            )
        )
    if not content_clusters:
        stages.append(clusters)
    stages += [_index_stage(cfg, run_dir, v, k_index[v]) for v in variants]
    # A preranker learns on its model's ANN candidates: a retrained model, a rebuilt index, or
    # another K_ann makes it stale. A prompted model serves cluster by cluster, so its
    # preranker learns on the clusters' search settings too.
    for v in variants:
        extra = (clusters.key, cfg.clusters) if get_variant(v).prompted else ()
        stages.append(_preranker_stage(cfg, run_dir, v, k_index[v], extra=extra))
    # The clusters' search settings (visit, strategy) change prompted prerankers and evaluation.
    k_eval = stage_key("evaluate", [s.key for s in stages], cfg.eval, cfg.clusters)
    stages.append(Stage("evaluate", k_eval, run_dir / "eval", lambda: evaluate_run(cfg, run_dir)))
    return stages


def _searched_without_training(
    cfg: RunConfig, run_dir: Path, k_peers: str, k_content_index: str
) -> list[Stage]:
    """The content encoder's index and the prerankers of the peers and the content encoder:
    they need no training, so they run beside the trainings. Each preranker is its own stage,
    keyed by the peer table's or the index's key: a retrained MTMH leaves them alone."""
    stages = [_index_stage(cfg, run_dir, CONTENT_SOURCE, k_content_index, beside=True)]
    searched = {**{p: k_peers for p in PEERS}, CONTENT_SOURCE: k_content_index}
    for source, key in searched.items():
        stages.append(_preranker_stage(cfg, run_dir, source, key, beside=True))
    return stages


def _in_driver(cfg: RunConfig, beside: bool) -> bool:
    """Whether a stage's work runs in the driver's process instead of as Ray tasks: beside
    the trainings, whose workers hold the CPUs a task would wait for (not on a GPU run, whose
    tasks get the GPU the driver may lack)."""
    return beside and not cfg.index.use_gpu


def _index_stage(
    cfg: RunConfig, run_dir: Path, source: str, key: str, beside: bool = False
) -> Stage:
    """The ANN index of every head of `source`."""
    here = _in_driver(cfg, beside)
    return Stage(
        f"index:{source}",
        key,
        run_dir / "indexes" / source,
        lambda: build_indexes(run_dir, source, cfg, in_process=here),
        beside,
    )


def _preranker_stage(
    cfg: RunConfig,
    run_dir: Path,
    source: str,
    searched: str,
    beside: bool = False,
    extra: tuple[Any, ...] = (),
) -> Stage:
    """The preranker of one model, keyed by what it searches (`searched`: the peer table's or
    the index's key) and by how its candidates are cut and labelled."""
    ec = cfg.eval
    neighbours = (ec.k_ann, ec.k_ann_max_catalog_fraction, ec.keep_per_head, ec.max_triggers)
    # The feature set is part of the key: a preranker fitted on other features cannot score.
    features = tuple(feature_names(()))
    key = stage_key(
        "preranker",
        source,
        searched,
        features,
        cfg.preranker,
        cfg.holdout,
        *neighbours,
        *extra,
        cfg.seed,
    )
    here = _in_driver(cfg, beside)
    return Stage(
        f"preranker:{source}",
        key,
        run_dir / "preranker" / source,
        lambda: fit_prerankers(cfg, run_dir, [source], in_process=here),
        beside,
    )


def _clusters_stage(cfg: RunConfig, run_dir: Path, k_enc: str, k_train: dict[str, str]) -> Stage:
    """The clusters stage, keyed by the stage whose embeddings it clusters."""
    cc = cfg.clusters
    if cc.source != CONTENT_SOURCE and cc.source not in k_train:
        raise ConfigError(
            f"clusters.source={cc.source!r}: not 'content' nor a variant this pipeline trains "
            f"({', '.join(k_train)})"
        )
    key = _clusters_key(cfg, k_train.get(cc.source, k_enc))
    return Stage("clusters", key, run_dir / "clusters", lambda: build_clusters(cfg, run_dir))


def _clusters_key(cfg: RunConfig, source_key: str) -> str:
    """The clusters' key: the embedding they cluster and the clustering settings."""
    return stage_key("clusters", source_key, cfg.clusters.clustering(), cfg.seed)


def _train_keys(
    cfg: RunConfig, configs: dict[VariantName, RunConfig], k_enc: str, k_clusters: str | None
) -> dict[VariantName, str]:
    """Each variant's training key. Trainings validate on the holdout split with the
    evaluation's trigger count; a prompted variant (dat) trains against the clusters, which
    must exist before the trainings (clustered from the content embeddings), and validates
    on its clusters.visit nearest ones."""
    keys: dict[VariantName, str] = {}
    for v, c in configs.items():
        model = artifact_fields(c.model)
        if not get_variant(v).prompted:
            model.pop("num_cluster_negatives")  # a prompted variant's knob only
        parts: list[Any] = [k_enc, model, c.train, cfg.holdout, cfg.eval.max_triggers]
        if get_variant(v).prompted:
            if k_clusters is None and cfg.clusters.source in configs:
                raise ConfigError(
                    f"variant {v!r} trains against the catalog's clusters, which must come "
                    f"from the content embeddings (clusters.source=content), not from "
                    f"{cfg.clusters.source!r} trained beside it"
                )
            parts += [k_clusters, cfg.clusters.visit]  # it validates as it serves
        keys[v] = stage_key("train", *parts)
    return keys


def _encode(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    stats = encode_content(cfg, run_dir)
    quality = content_topic_match(run_dir, k=10)
    (run_dir / "content" / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    return stats


def run_pipeline(
    cfg: RunConfig, run_dir: Path, force: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Run every stage that is not current; returns the report (evaluate's output).

    The console gets one line per stage (mtmh/stage_board.py): the trainings share one line
    counting variants, and the index builds one line counting embedding sources."""
    console = console or Console()
    stages = plan(cfg, run_dir)
    save_config(cfg, run_dir / "pipeline.yaml")
    todo = [s for s in stages if force or not s.current()]
    skipped = [s for s in stages if s not in todo]
    if skipped:
        names = ", ".join(_grouped_names(skipped))
        console.print(f"[dim]current, skipped: {names}[/dim]", soft_wrap=True)
    started_all = time.perf_counter()
    trains = any(_kind(s) == "train" for s in todo)
    beside = [s for s in todo if s.beside] if trains else []
    with StageBoard(console) as board, ThreadPoolExecutor(1) as thread:
        later = _Beside(beside, board, thread)
        for kind, group in _by_kind([s for s in todo if s not in beside]):
            if kind == "evaluate":
                later.join()  # the evaluation is the first stage to read what ran beside
            if kind == "train":
                trainings = {s.name.removeprefix("train:"): s for s in group}
                _run_trainings(cfg, run_dir, trainings, board, later.start)
                later.start()  # if the trainings never left a core idle: they have ended
            elif kind == "preranker" and len(group) > 1:
                _run_prerankers(cfg, run_dir, group, board)
            else:
                with board.stage(kind, total=len(group) if len(group) > 1 else None) as advance:
                    for s in group:
                        s.execute()
                        if len(group) > 1:
                            advance(1)
        later.join()
    console.print(f"pipeline finished in {time.perf_counter() - started_all:.1f} s")
    report_path = run_dir / "report.json"
    return json.loads(report_path.read_text()) if report_path.is_file() else {}


class _Beside:
    """The stages that run beside the trainings, started once: when the trainings first leave
    a core idle (on two cores, once the second-last training ends: started with the
    trainings, they would slow the longest one, which the run waits for), or when the
    trainings end. They may go on beside the trained models' index and preranker stages,
    which read none of them; the evaluation waits for them (`join`)."""

    def __init__(self, stages: list[Stage], board: StageBoard, thread: ThreadPoolExecutor):
        self.stages, self.board, self.thread = stages, board, thread
        self.future: Future[None] | None = None

    def start(self) -> None:
        if self.future is None and self.stages:
            log.info("beside the trainings: %s", ", ".join(s.name for s in self.stages))
            self.future = self.thread.submit(_run_beside, self.stages, self.board)

    def join(self) -> None:
        if self.stages:
            self.start()
            assert self.future is not None
            self.future.result()


def _run_beside(stages: list[Stage], board: StageBoard) -> None:
    """Stages run in a thread while the trainings run: each one's line is printed when it
    ends (a live line would take the trainings' step counts, mtmh/progress.py)."""
    for stage in stages:
        try:
            seconds = stage.execute()
        except BaseException:
            board.console.print(f"[red]✗[/red] {stage.name:<10} failed (beside the trainings)")
            raise
        board.console.print(
            f"[green]✓[/green] {stage.name:<10} {seconds:.1f} s (beside the trainings)"
        )


def _run_prerankers(cfg: RunConfig, run_dir: Path, stages: list[Stage], board: StageBoard) -> None:
    """Several models' prerankers, fitted side by side as Ray tasks (one stage line)."""
    log.info("stage preranker: starting")
    started = time.perf_counter()
    with board.stage("preranker"):
        fit_prerankers(cfg, run_dir, [s.name.removeprefix("preranker:") for s in stages])
    seconds = time.perf_counter() - started
    for s in stages:
        s.mark(seconds)
    log.info("stage preranker: done in %.1f s", seconds)


def _kind(stage: Stage) -> str:
    return stage.name.split(":")[0]  # "train:mtmh" -> "train"


def _by_kind(stages: list[Stage]) -> list[tuple[str, list[Stage]]]:
    """Consecutive stages of one kind together (the trainings, the index builds)."""
    groups: list[tuple[str, list[Stage]]] = []
    for s in stages:
        if groups and groups[-1][0] == _kind(s):
            groups[-1][1].append(s)
        else:
            groups.append((_kind(s), [s]))
    return groups


def _grouped_names(stages: list[Stage]) -> list[str]:
    """Each kind of stage once, in order of first appearance, with its count when there are
    several ("index (4)")."""
    counts = Counter(_kind(s) for s in stages)  # insertion-ordered
    return [kind if n == 1 else f"{kind} ({n})" for kind, n in counts.items()]


def _run_trainings(
    cfg: RunConfig,
    run_dir: Path,
    stages: dict[str, Stage],
    board: StageBoard,
    on_idle_core: Callable[[], None],
) -> None:
    log.info("training %s, %d at a time", ", ".join(stages), cfg.pipeline.concurrent_trainings)
    t0 = time.perf_counter()
    configs: dict[str, RunConfig] = {
        v: variant_config(cfg, v) for v in cfg.pipeline.variants if v in stages
    }
    with board.stage("train", total=len(stages)) as advance:

        def done(v: str) -> None:
            stages[v].mark(time.perf_counter() - t0)
            log.info("train:%s: done at %.1f s", v, time.perf_counter() - t0)
            advance(1)

        train_in_slots(configs, run_dir, cfg.pipeline.concurrent_trainings, done, on_idle_core)
