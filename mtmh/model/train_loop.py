"""Distributed training of the item tower on Ray Train (TorchTrainer, DDP).

`fit(cfg, run_dir)` makes sure the run's training pairs exist (mtmh/model/training_pairs.py:
held-out pairs removed, deduplicated and shuffled once per run, shared by every variant) and
builds a `TorchTrainer` that streams them to the workers as Ray Data shards (the pipeline's
trainings share a few trainers instead, mtmh/model/slots.py). Each worker runs
`train_in_worker`: a loop over epochs calling `train_epoch` (whose step is
`mtmh/model/step.py:train_step`), with what every training needs around it from
mtmh/model/harness.py:

- epochs with early stopping: after each epoch every worker measures validation recall on
  the split carved from the end of T1 (`mtmh/holdout.py`); `train.patience` epochs
  without a gain end the training, and the best epoch's weights are what it writes;
- metrics to Ray every `train.report_every` steps, plus one validation row per epoch;
- checkpoints every `train.checkpoint_every` steps and at each epoch's end; with
  `FailureConfig`, a failed worker group restarts from the last checkpoint.

Outputs in RUN/models/<variant>/: model.pt, config.yaml, metrics.jsonl (one row per report),
embeddings/<head>.parquet (item_id, embedding), a prompted variant's queries/<head>.npy
(mtmh/model/prompted.py), ray_train/ (Ray's own run storage) and, with
`train.fresh_snapshot_every`, fresh/step-<N>.npz: the embeddings of the least-engaged items
at every N-th step, for the fresh-content convergence analysis (spec section 7).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.clusters.artifact import load_clusters
from mtmh.clusters.query_table import clusters_digest, save_queries
from mtmh.config import EvalConfig, RunConfig, build_config, config_to_dict, save_config
from mtmh.holdout import (
    HoldoutSplit,
    ann_order_recall,
    embedding_scores,
    load_holdout,
    validation_score,
)
from mtmh.model.harness import Progress, Reporter, make_trainer, restore, save_checkpoint
from mtmh.model.inputs import load_item_tables
from mtmh.model.negatives import ClusterNegatives, MixedNegatives
from mtmh.model.prompted import prompted_queries, prompted_scores
from mtmh.model.step import train_step
from mtmh.model.task import RetrievalTask
from mtmh.model.tower import ItemTower
from mtmh.model.training_pairs import ensure_training_pairs, training_pairs
from mtmh.model.variants import get_variant
from mtmh.model.warm_start import warm_start_from, warm_start_source

log = logging.getLogger(__name__)
START = "val/start/"  # a warm start's validation before its first step


def model_name(cfg: RunConfig) -> str:
    """Where a training's outputs go: `model.name`, else the variant's name."""
    return cfg.model.name or cfg.model.variant


def model_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "models" / name


def build_task(cfg: RunConfig, run_dir: Path) -> RetrievalTask:
    """The tower of `cfg.model.variant` with its losses; the logQ correction uses the run's
    training pairs' target distribution (built by `fit`)."""
    variant = get_variant(cfg.model.variant)
    tables = load_item_tables(
        run_dir,
        teacher=variant.needs_teacher_logits
        or "teacher" in variant.inputs
        or cfg.model.pair_weighting == "sim",
        content_features="content_features" in variant.inputs,
    )
    hard = None
    if variant.prompted:  # the catalog's clusters are its tasks
        clustering, _ = load_clusters(run_dir, tables.num_items)
        hard = ClusterNegatives(clustering.assignments, cfg.model.num_cluster_negatives, cfg.seed)
    log_frequency = training_pairs(run_dir, cfg).target_log_frequency()
    torch.manual_seed(cfg.seed)
    tower = ItemTower(variant, tables, cfg.model, hard.num_clusters if hard else 0)
    negatives = MixedNegatives(log_frequency, cfg.model.num_random_negatives, cfg.seed)
    return RetrievalTask(tower, cfg.model, negatives, tables.teacher, hard)


def make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.train.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.train.lr)
    return torch.optim.Adam(params, lr=cfg.train.lr)


def batch_options(cfg: RunConfig, epoch: int) -> dict[str, Any]:
    """How a worker batches its shard (`iter_torch_batches` keyword arguments). The global
    shuffle happens once per run (mtmh/model/training_pairs.py); the small local buffer,
    seeded by epoch, reorders within it."""
    tc = cfg.train
    return {
        "batch_size": tc.batch_size,
        "drop_last": True,
        "local_shuffle_buffer_size": 4 * tc.batch_size,
        "local_shuffle_seed": cfg.seed + epoch,
    }


def validate(
    task: RetrievalTask, split: HoldoutSplit, ec: EvalConfig, visit: int | None = None
) -> dict[str, float]:
    """Validation recall (ANN order, exact search, the evaluation's keep and top_k) of every
    head, and the mean of the heads' validation scores as "val/score". A prompted variant is
    searched as it serves: its `visit` nearest clusters, each with its own query."""
    emb = {h: torch.as_tensor(e) for h, e in embed_all(task.tower).items()}
    task.tower.train()
    hard = task.cluster_negatives
    queries = prompted_queries(task.tower) if hard is not None else {}
    out: dict[str, float] = {}
    scores = []
    for head, e in emb.items():
        score_fn = embedding_scores(e)
        if hard is not None:  # each cluster searched with its own query, merged by score
            assignments = hard.assignments.numpy()
            score_fn = prompted_scores(torch.as_tensor(queries[head]), e, assignments, visit)
        recall = ann_order_recall(score_fn, split, keep=ec.keep_per_head, top_k=ec.top_k)
        out.update({f"val/{head}/recall@{k}": v for k, v in recall.items()})
        scores.append(validation_score(recall))
    out["val/score"] = float(np.mean(scores))
    return out


def fresh_item_ids(run_dir: Path, max_interactions: int, max_items: int) -> np.ndarray:
    """Ids of the least-engaged items (at most `max_interactions` in T1), fewest first."""
    items = pq.read_table(
        run_dir / "data" / "items.parquet", columns=["item_id", "t1_interactions"]
    )
    counts = items["t1_interactions"].to_numpy()
    ids = items["item_id"].to_numpy()
    order = np.argsort(counts, kind="stable")
    chosen = order[counts[order] <= max_interactions][:max_items]
    return np.sort(ids[chosen])


@torch.no_grad()
def snapshot_fresh(tower: ItemTower, fresh_ids: np.ndarray, path: Path) -> None:
    was_training = tower.training
    tower.eval()
    ids = torch.as_tensor(fresh_ids, device=tower.dense_table.device)
    heads = {h: e.float().cpu().numpy() for h, e in tower(ids).items()}
    tower.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, item_id=fresh_ids, **heads)


@dataclass
class StepHooks:
    """What a step may do besides training: fail once on purpose (tests of recovery) and
    snapshot the fresh items' embeddings (the fresh-content analysis)."""

    fail_at_step: int | None = None
    fail_marker: Path | None = None
    fresh_ids: np.ndarray | None = None  # rank 0, with train.fresh_snapshot_every
    fresh_every: int = 1
    fresh_dir: Path | None = None

    def before(self, step: int) -> None:
        if self.fail_at_step == step and self.fail_marker and not self.fail_marker.exists():
            self.fail_marker.write_text(f"failed at step {step}\n")
            raise RuntimeError(f"planned failure at step {step} (test)")

    def after(self, step: int, tower: ItemTower) -> None:
        if self.fresh_ids is not None and self.fresh_dir and step % self.fresh_every == 0:
            snapshot_fresh(tower, self.fresh_ids, self.fresh_dir / f"step-{step:07d}.npz")


def step_hooks(config: dict[str, Any], cfg: RunConfig, run_dir: Path, rank: int) -> StepHooks:
    tc = cfg.train
    hooks = StepHooks(config.get("fail_at_step"), Path(config.get("fail_marker") or "."))
    if tc.fresh_snapshot_every is not None and rank == 0:
        hooks.fresh_ids = fresh_item_ids(run_dir, tc.fresh_max_interactions, tc.fresh_max_items)
        hooks.fresh_every = tc.fresh_snapshot_every
        hooks.fresh_dir = model_dir(run_dir, model_name(cfg)) / "fresh"
    return hooks


def train_epoch(
    model: torch.nn.Module,
    task: RetrievalTask,
    opt: torch.optim.Optimizer,
    batches: Any,
    progress: Progress,
    cfg: RunConfig,
    reporter: Reporter,
    hooks: StepHooks,
) -> bool:
    """One pass over `batches` (skipping those a restart already trained); False when
    `train.max_steps` ran out."""
    tc, device = cfg.train, next(task.parameters()).device
    rank, seconds = reporter.rank, reporter.seconds
    waited = time.perf_counter()
    for batch in batches:
        started = time.perf_counter()
        seconds["data"] += started - waited
        if progress.step_in_epoch < progress.skip:
            progress.step_in_epoch += 1  # trained before the failure
            continue
        if tc.max_steps is not None and progress.step >= tc.max_steps:
            return False
        hooks.before(progress.step)
        negatives = task.negatives.sample(rank, progress.step, device)
        batch = {k: v.to(device) for k, v in batch.items()}
        if task.cluster_negatives is not None:
            batch["cluster_negative_id"] = task.cluster_negatives.sample(
                rank, progress.step, device
            )
        if "count" in batch:
            batch["count"] = batch["count"].float() ** tc.count_power
        losses = train_step(model, opt, batch, negatives)
        seconds["steps"] += time.perf_counter() - started
        progress.step += 1
        progress.step_in_epoch += 1
        hooks.after(progress.step, task.tower)
        reporter.after_step(progress, len(batch["trigger_id"]), losses)
        waited = time.perf_counter()
    return True


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker function of one training; `config` carries the run config as a
    dict."""
    import ray.train

    cfg = build_config(config["run_config"])
    torch.set_num_threads(cfg.train.threads_per_worker)
    shard = ray.train.get_dataset_shard("train")
    train_in_worker(cfg, Path(config["run_dir"]), shard, config)


def train_in_worker(
    cfg: RunConfig, run_dir: Path, shard: Any, config: dict[str, Any]
) -> dict[str, float]:
    """Train `cfg.model.variant` on this worker's `shard` of its pairs, from Ray Train's
    latest checkpoint when that is of this training; rank 0 writes the outputs. Returns the
    final metrics row. `config`: the loop's config (a test's planned failure)."""
    import ray.train
    import ray.train.torch

    tc, name = cfg.train, model_name(cfg)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    task = build_task(cfg, run_dir)
    if tc.init_from:  # a checkpoint of this training (restore, below) still comes first
        earlier = warm_start_source(tc.init_from, name)
        grown = warm_start_from(task.tower, earlier, run_dir)
        log.info("rank %d starts from %s (%d new id rows)", rank, earlier, grown)
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    opt = make_optimizer(cfg, task.parameters())
    progress = restore(task, opt, tc.patience, name)
    if progress.step:
        log.info("rank %d resumed at step %d (epoch %d)", rank, progress.step, progress.epoch)
    model = ray.train.torch.prepare_model(task)
    metrics = model_dir(run_dir, name) / "metrics.jsonl"
    reporter = Reporter(
        tc,
        metrics if rank == 0 else None,
        lambda: save_checkpoint(model, opt, progress, name) if rank == 0 else None,
        world,
        rank,
    )
    if tc.init_from and split and not progress.step:
        validate_start(task, split, cfg, reporter)
    hooks = step_hooks(config, cfg, run_dir, rank)
    epoch = progress.epoch
    for epoch in range(progress.epoch, tc.epochs):
        batches = shard.iter_torch_batches(dtypes=torch.int64, **batch_options(cfg, epoch))
        if not train_epoch(model, task, opt, batches, progress, cfg, reporter, hooks):
            break
        progress.epoch, progress.step_in_epoch, progress.skip = epoch + 1, 0, 0
        if split and end_of_epoch(task, split, cfg, epoch, progress, reporter):
            break
    progress.epoch, progress.step_in_epoch = tc.epochs, 0  # a restart now trains nothing
    final = reporter.final(progress, min(epoch, tc.epochs - 1))
    if progress.stopper.best_state is not None:
        task.load_state_dict(progress.stopper.best_state)  # the best epoch is what ships
    if rank == 0:
        hard = task.cluster_negatives
        write_outputs(task.tower, cfg, run_dir, hard.assignments.numpy() if hard else None)
    return final


def validate_start(
    task: RetrievalTask, split: HoldoutSplit, cfg: RunConfig, reporter: Reporter
) -> None:
    """A warm start's row before any step ("val/start/..."): the earlier model, grown to this
    catalog, on this run's validation split; the update gate's baseline (mtmh/update/)."""
    started = time.perf_counter()
    val = validate(task, split, cfg.eval, cfg.clusters.visit)
    reporter.seconds["validation"] += time.perf_counter() - started
    reporter.write({"step": 0, "epoch": -1, **{START + k[4:]: v for k, v in val.items()}})
    log.info("before any step: val/score %.4f", val["val/score"])


def end_of_epoch(
    task: RetrievalTask,
    split: HoldoutSplit,
    cfg: RunConfig,
    epoch: int,
    progress: Progress,
    reporter: Reporter,
) -> bool:
    """Validate, report the epoch's row with its checkpoint; True when training should stop.
    Every rank validates the same (DDP-synchronised) weights, so all agree on when to stop."""
    started = time.perf_counter()
    val = validate(task, split, cfg.eval, cfg.clusters.visit)
    reporter.seconds["validation"] += time.perf_counter() - started
    stopper = progress.stopper
    stop = stopper.update(val["val/score"], epoch, task)
    reporter.after_epoch(progress, epoch, {**val, "val/best_epoch": stopper.best_epoch})
    log.info(
        "epoch %d: val/score %.4f (best %.4f at epoch %d)",
        epoch,
        val["val/score"],
        stopper.best_score,
        stopper.best_epoch,
    )
    return stop


@torch.no_grad()
def embed_all(tower: ItemTower, batch_size: int = 8192) -> dict[str, np.ndarray]:
    """{head: [N, D]} embeddings of every item."""
    tower.eval()
    n, device = tower.num_items, tower.dense_table.device
    parts: dict[str, list[np.ndarray]] = {h: [] for h in tower.heads}
    for start in range(0, n, batch_size):
        ids = torch.arange(start, min(n, start + batch_size), device=device)
        for head, emb in tower(ids).items():
            parts[head].append(emb.float().cpu().numpy())
    return {h: np.concatenate(p) for h, p in parts.items()}


def write_outputs(
    tower: ItemTower, cfg: RunConfig, run_dir: Path, assignments: np.ndarray | None = None
) -> None:
    """The model's files; `assignments`: the clusters a prompted variant was trained on."""
    out = model_dir(run_dir, model_name(cfg))
    (out / "embeddings").mkdir(parents=True, exist_ok=True)
    torch.save(tower.state_dict(), out / "model.pt")
    save_config(cfg, out / "config.yaml")
    for head, emb in embed_all(tower).items():
        dim = emb.shape[1]
        table = pa.table(
            {
                "item_id": pa.array(np.arange(len(emb)), pa.int32()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim),
            }
        )
        pq.write_table(table, out / "embeddings" / f"{head}.parquet")
    if tower.num_prompts:
        if assignments is None:
            raise ValueError("a prompted model's queries need the clusters it was trained on")
        save_queries(out, prompted_queries(tower), clusters_digest(assignments))


@dataclass(frozen=True)
class ReadPairs:
    """A training pairs file read into the object store (a materialized Ray Dataset)."""

    path: Path
    dataset: Any

    @classmethod
    def read(cls, path: Path, data_cpus: float) -> ReadPairs:
        """Read before any worker group starts: read lazily, inside each trainer's own
        executor, trainings side by side wait forever for the CPUs their peers' workers hold
        ("cluster resources are not enough to run any task")."""
        import ray

        return cls(path, ray.data.read_parquet(str(path), num_cpus=data_cpus).materialize())


def start_clean(cfg: RunConfig, run_dir: Path) -> Path:
    """Check what training `cfg` reads, then remove its earlier outputs; returns the path of
    its training pairs (made when missing)."""
    # What the training reads is checked before anything of an earlier training is removed.
    if get_variant(cfg.model.variant).prompted:
        load_clusters(run_dir)  # a clear error when there are none
    if cfg.train.init_from:  # likewise for the model a warm start reads
        warm_start_source(cfg.train.init_from, model_name(cfg))
    path = ensure_training_pairs(run_dir, cfg).path
    out = model_dir(run_dir, model_name(cfg))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    # A new training starts clean: Ray Train resumes from whatever checkpoint it finds under
    # the same storage path and name, so an earlier run's final checkpoint would make this
    # one train nothing. (Recovery from a failure inside this training is Ray's, unaffected.)
    shutil.rmtree(out / "ray_train", ignore_errors=True)
    shutil.rmtree(out / "fresh", ignore_errors=True)  # snapshots of an earlier training
    shutil.rmtree(out / "queries", ignore_errors=True)  # an earlier prompted training's
    (out / "target_log_frequency.npy").unlink(missing_ok=True)  # now in RUN/training_pairs
    return path


def fit(
    cfg: RunConfig,
    run_dir: Path,
    callbacks: list[Any] | None = None,
    **loop_extras: Any,
) -> Any:
    """Train `cfg.model.variant` on the run's training pairs with a TorchTrainer of its own;
    returns Ray's Result. `callbacks` go to Ray Train's RunConfig (a Tune trial passes
    TuneReportCallback). Several trainings of one run share worker groups instead:
    mtmh/model/slots.py."""
    path = start_clean(cfg, run_dir)
    out = model_dir(run_dir, model_name(cfg))
    pairs = ReadPairs.read(path, cfg.train.data_cpus)
    loop_config = {
        "run_config": config_to_dict(cfg),
        "run_dir": str(run_dir.resolve()),
        **loop_extras,
    }
    trainer = make_trainer(
        train_loop_per_worker,
        loop_config,
        cfg.train,
        f"train-{model_name(cfg)}",
        out / "ray_train",
        {"train": pairs.dataset},
        callbacks,
    )
    return trainer.fit()
