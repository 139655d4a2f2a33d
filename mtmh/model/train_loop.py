"""Distributed training of the item tower on Ray Train (TorchTrainer, DDP).

`fit(cfg, run_dir)` builds a `TorchTrainer`: the positive pairs of RUN/data/pairs stream to
the workers as Ray Data shards (the driver never holds them; `training_pairs` drops the
validation split's held-out pairs, deduplicates and shuffles them), and each worker runs
`train_loop_per_worker`. The step itself is `mtmh/model/step.py:train_step`; around it this
module keeps what a run needs:

- epochs with early stopping: after each epoch every worker measures validation recall on
  the split carved from the end of T1 (`mtmh/validation.py`); `train.patience` epochs
  without a gain end the training, and the best epoch's weights are what it writes;
- metrics to Ray every `train.report_every` steps, plus one validation row per epoch;
- checkpoints every `train.checkpoint_every` steps and at each epoch's end. With
  `FailureConfig`, a failed worker group restarts from the last checkpoint: the model,
  optimizer, step counter and early-stopping state come back, and the batches of the
  interrupted epoch that were already trained are skipped, so the run ends with the same
  number of steps.

Outputs in RUN/models/<variant>/: model.pt, config.yaml, metrics.jsonl (one row per report),
embeddings/<head>.parquet (item_id, embedding), target_log_frequency.npy (the in-batch
distribution the logQ correction used), ray_train/ (Ray's own run storage) and, with
`train.fresh_snapshot_every`, fresh/step-<N>.npz: the embeddings of the least-engaged items
at every N-th step, for the fresh-content convergence analysis (spec section 7).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.config import EvalConfig, RunConfig, build_config, config_to_dict, save_config
from mtmh.model.inputs import load_item_tables
from mtmh.model.negatives import MixedNegatives
from mtmh.model.step import train_step
from mtmh.model.task import RetrievalTask
from mtmh.model.tower import ItemTower
from mtmh.model.variants import get_variant
from mtmh.validation import (
    HoldoutSplit,
    ann_order_recall,
    embedding_scores,
    load_holdout,
    validation_score,
)

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
SAMPLING_FILE = "target_log_frequency.npy"  # the in-batch sampling distribution, for logQ


def model_name(cfg: RunConfig) -> str:
    """Where a training's outputs go: `model.name`, else the variant's name."""
    return cfg.model.name or cfg.model.variant


def model_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "models" / name


def build_task(cfg: RunConfig, run_dir: Path) -> RetrievalTask:
    variant = get_variant(cfg.model.variant)
    tables, log_pop = load_item_tables(
        run_dir,
        teacher=variant.needs_teacher_logits
        or "teacher" in variant.inputs
        or cfg.model.pair_weighting == "sim",
        content_features="content_features" in variant.inputs,
    )
    sampling = model_dir(run_dir, model_name(cfg)) / SAMPLING_FILE
    if sampling.is_file():  # written by fit(): the distribution of the stream that trains
        log_pop = np.load(sampling)
    torch.manual_seed(cfg.seed)
    tower = ItemTower(variant, tables, cfg.model)
    negatives = MixedNegatives(log_pop, cfg.model.num_random_negatives, cfg.seed)
    return RetrievalTask(tower, cfg.model, tables.teacher, negatives)


def make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.train.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.train.lr)
    return torch.optim.Adam(params, lr=cfg.train.lr)


def batch_options(cfg: RunConfig, epoch: int) -> dict[str, Any]:
    """How a worker batches its shard (`iter_torch_batches` keyword arguments). The global
    shuffle happens upstream (`training_pairs`); the small local buffer only mixes blocks."""
    tc = cfg.train
    return {
        "batch_size": tc.batch_size,
        "drop_last": True,
        "local_shuffle_buffer_size": 4 * tc.batch_size,
        "local_shuffle_seed": cfg.seed + epoch,
    }


def training_pairs(
    run_dir: Path,
    cfg: RunConfig,
    split: HoldoutSplit,
    columns: tuple[str, ...] = ("trigger_id", "target_id"),
) -> Any:
    """The Ray Dataset of RUN/data/pairs that trains.

    1. The validation users' held-out pairs (target at or after the cut) are removed.
    2. With `train.dedup_pairs`, each distinct (trigger, target) pair appears once, with its
       number of occurrences in a "count" column (then only the two id columns are kept).
       The result is materialised in the object store: the aggregation runs once, not once
       per epoch.
    3. With `train.shuffle`, a global Ray Data shuffle seeded with `seed`, so a rerun trains
       on the same order (pair files are written user by user; a local buffer alone would
       leave a batch with dozens of rows of one user). Deduplicated pairs are shuffled once,
       before they are materialised (a shuffle per epoch cost ~10 s of Ray Data overhead per
       epoch on ml-100k); each epoch's local buffer (seeded by epoch) reorders them further.
    """
    import ray

    pairs = run_dir / "data" / "pairs"
    if not pairs.is_dir():
        raise FileNotFoundError(f"{pairs} not found: run ray_jobs/prepare_data.py first")
    tc = cfg.train
    read = list(dict.fromkeys([*columns, *(("user_id", "target_timestamp") if split else ())]))
    ds = ray.data.read_parquet(str(pairs), num_cpus=tc.data_cpus).select_columns(read)
    if split:

        def drop_held_out(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            keep = split.training_mask(batch["user_id"], batch["target_timestamp"])
            return {c: batch[c][keep] for c in columns}

        ds = ds.map_batches(drop_held_out, batch_format="numpy", num_cpus=tc.data_cpus)
    if tc.dedup_pairs:
        ds = (
            ds.select_columns(["trigger_id", "target_id"])
            .groupby(["trigger_id", "target_id"])
            .count()
            .rename_columns({"count()": "count"})
        )
        if tc.shuffle:  # once, before materialising: groupby's output is sorted by pair
            ds = ds.random_shuffle(seed=cfg.seed, num_cpus=tc.data_cpus)
        return ds.materialize()
    if tc.shuffle:
        ds = ds.random_shuffle(seed=cfg.seed, num_cpus=tc.data_cpus)
    return ds


def target_log_frequency(ds: Any, num_items: int) -> np.ndarray:
    """[N] log of each item's share of the stream's targets, smoothed by one: how often the
    in-batch candidates hold each item, for the logQ correction. Streams the target column
    (the driver holds one batch at a time)."""
    counts = np.ones(num_items, np.float64)
    for batch in ds.iter_batches(batch_size=1 << 16, batch_format="numpy"):
        counts += np.bincount(batch["target_id"], minlength=num_items)[:num_items]
    return np.log(counts / counts.sum()).astype(np.float32)


@dataclass
class EarlyStopping:
    """Keeps the best validation score and its weights; says when `patience` epochs have
    passed without a gain."""

    patience: int
    best_score: float = -math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0

    def update(self, score: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record an epoch's score; True when training should stop."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


def validate(task: RetrievalTask, split: HoldoutSplit, ec: EvalConfig) -> dict[str, float]:
    """Validation recall (ANN order, exact search, the evaluation's keep and top_k) of every
    head, and the mean of the heads' validation scores as "val/score"."""
    task.tower.eval()
    with torch.no_grad():
        emb = {h: torch.as_tensor(e) for h, e in embed_all(task.tower).items()}
    task.tower.train()
    out: dict[str, float] = {}
    scores = []
    for head, e in emb.items():
        recall = ann_order_recall(embedding_scores(e), split, keep=ec.keep_per_head,
                                  top_k=ec.top_k)  # fmt: skip
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


def _save_state(task: torch.nn.Module, opt: torch.optim.Optimizer, step: int, epoch: int,
                step_in_epoch: int, stopper: EarlyStopping) -> Any:  # fmt: skip
    import ray.train

    folder = Path(tempfile.mkdtemp(prefix="mtmh-ckpt-"))
    torch.save(
        {
            "model": _unwrap(task).state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "early_stopping": stopper,
        },
        folder / STATE_FILE,
    )
    return ray.train.Checkpoint.from_directory(str(folder))


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The task inside a DistributedDataParallel wrapper (or the task itself)."""
    inner = getattr(module, "module", module)
    assert isinstance(inner, torch.nn.Module)
    return inner


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker function; `config` carries the run config as a dict."""
    import ray.train
    import ray.train.torch

    cfg = build_config(config["run_config"])
    run_dir = Path(config["run_dir"])
    fail_at_step = config.get("fail_at_step")  # tests: fail once, on purpose
    tc = cfg.train
    torch.set_num_threads(tc.threads_per_worker)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    task = build_task(cfg, run_dir)
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    opt = make_optimizer(cfg, task.parameters())
    step = epoch0 = skip = 0
    stopper = EarlyStopping(tc.patience)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
        task.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch0, skip = state["step"], state["epoch"], state["step_in_epoch"]
        stopper = state["early_stopping"]
        log.info("rank %d resumed at step %d (epoch %d, +%d batches)", rank, step, epoch0, skip)
    ddp_task = ray.train.torch.prepare_model(task)
    device = ray.train.torch.get_device()
    metrics_path = model_dir(run_dir, model_name(cfg)) / "metrics.jsonl"
    fresh_ids = None
    if tc.fresh_snapshot_every is not None and rank == 0:
        fresh_ids = fresh_item_ids(run_dir, tc.fresh_max_interactions, tc.fresh_max_items)

    def save(epoch: int, step_in_epoch: int) -> Any:
        return (
            _save_state(ddp_task, opt, step, epoch, step_in_epoch, stopper) if rank == 0 else None
        )

    shard = ray.train.get_dataset_shard("train")
    window_start, window_pairs = time.perf_counter(), 0
    reported_step = step
    last_losses: dict[str, torch.Tensor] | None = None
    out_of_steps = False
    epoch = epoch0
    for epoch in range(epoch0, tc.epochs):
        step_in_epoch = 0
        for batch in shard.iter_torch_batches(dtypes=torch.int64, **batch_options(cfg, epoch)):
            if epoch == epoch0 and step_in_epoch < skip:
                step_in_epoch += 1  # trained before the failure
                continue
            if tc.max_steps is not None and step >= tc.max_steps:
                out_of_steps = True
                break
            if fail_at_step is not None and step == fail_at_step:
                marker = Path(config["fail_marker"])
                if not marker.exists():
                    marker.write_text(f"failed at step {step}\n")
                    raise RuntimeError(f"planned failure at step {step} (test)")
            negatives = task.negatives.sample(rank, step, device)
            batch = {k: v.to(device) for k, v in batch.items()}
            if "count" in batch:
                batch["count"] = batch["count"].float() ** tc.count_power
            losses = train_step(ddp_task, opt, batch, negatives)
            step += 1
            step_in_epoch += 1
            if fresh_ids is not None and step % (tc.fresh_snapshot_every or 1) == 0:
                fresh_dir = model_dir(run_dir, model_name(cfg)) / "fresh"
                snapshot_fresh(task.tower, fresh_ids, fresh_dir / f"step-{step:07d}.npz")
            window_pairs += len(batch["trigger_id"]) * world
            last_losses = losses
            if step % tc.report_every == 0 or step % tc.checkpoint_every == 0:
                ckpt = save(epoch, step_in_epoch) if step % tc.checkpoint_every == 0 else None
                metrics = _metrics_row(step, epoch, window_pairs, window_start, losses)
                _log_metrics(metrics, metrics_path if rank == 0 else None, ckpt)
                reported_step = step
                window_start, window_pairs = time.perf_counter(), 0
        skip = 0
        if out_of_steps:
            break
        if split:
            # Every rank validates the same (DDP-synchronised) weights, so all agree on when
            # to stop; the row goes to Ray and metrics.jsonl with the epoch's checkpoint.
            val = validate(task, split, cfg.eval)
            stop = stopper.update(val["val/score"], epoch, task)
            # The last losses ride along: a Tune scheduler's metric must be in every report.
            losses_now = {k: float(v) for k, v in (last_losses or {}).items()}
            row = {"step": step, "epoch": epoch, **losses_now, **val,
                   "val/best_epoch": stopper.best_epoch}  # fmt: skip
            _log_metrics(row, metrics_path if rank == 0 else None, save(epoch + 1, 0))
            reported_step = -1  # the tail's losses still get their own row below
            log.info("epoch %d: val/score %.4f (best %.4f at epoch %d)", epoch,
                     val["val/score"], stopper.best_score, stopper.best_epoch)  # fmt: skip
            if stop:
                break
    # The last report carries the final checkpoint, and the tail steps since the last metrics
    # row (an epoch rarely ends on a report boundary). It is flagged "final", not "done":
    # Ray Tune reads a reported "done" as the end of the trial.
    final = save(tc.epochs, 0)
    metrics = {"step": step, "final": 1.0}
    if last_losses is not None and step > reported_step and window_pairs:
        metrics = {
            **_metrics_row(
                step, min(epoch, tc.epochs - 1), window_pairs, window_start, last_losses
            ),
            "final": 1.0,
        }
    if stopper.best_state is not None:
        task.load_state_dict(stopper.best_state)  # the best validation epoch is what ships
        metrics["val/best_epoch"] = stopper.best_epoch
        metrics["val/best_score"] = stopper.best_score
    _log_metrics(metrics, metrics_path if rank == 0 and "loss" in metrics else None, final)
    if rank == 0:
        write_outputs(task.tower, cfg, run_dir)


def _metrics_row(
    step: int, epoch: int, pairs: int, since: float, losses: dict[str, torch.Tensor]
) -> dict[str, float]:
    elapsed = time.perf_counter() - since
    return {
        "step": step,
        "epoch": epoch,
        "pairs_per_s": pairs / elapsed if elapsed > 0 else 0.0,
        **{k: v.detach().item() for k, v in losses.items()},  # a log value, off the graph
    }


def _log_metrics(metrics: dict[str, float], path: Path | None, checkpoint: Any) -> None:
    """Report to Ray (every rank must) and append to metrics.jsonl (rank 0 passes `path`)."""
    import ray.train

    if path is not None:
        with path.open("a") as fh:
            fh.write(json.dumps(metrics) + "\n")
    ray.train.report(metrics, checkpoint=checkpoint)


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


def write_outputs(tower: ItemTower, cfg: RunConfig, run_dir: Path) -> None:
    out = model_dir(run_dir, model_name(cfg))
    (out / "embeddings").mkdir(parents=True, exist_ok=True)
    torch.save(tower.state_dict(), out / "model.pt")
    save_config(cfg, out / "config.yaml")
    for head, emb in embed_all(tower).items():
        dim = emb.shape[1]
        table = pa.table({
            "item_id": pa.array(np.arange(len(emb)), pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim),
        })  # fmt: skip
        pq.write_table(table, out / "embeddings" / f"{head}.parquet")


def fit(
    cfg: RunConfig, run_dir: Path, callbacks: list[Any] | None = None, **loop_extras: Any
) -> Any:
    """Train `cfg.model.variant` on RUN/data/pairs with a TorchTrainer; returns Ray's Result.
    `callbacks` go to Ray Train's RunConfig (a Tune trial passes TuneReportCallback)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    out = model_dir(run_dir, model_name(cfg))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    # A new training starts clean: Ray Train resumes from whatever checkpoint it finds under
    # the same storage path and name, so an earlier run's final checkpoint would make this
    # one train nothing. (Recovery from a failure inside this fit() is Ray's, unaffected.)
    shutil.rmtree(out / "ray_train", ignore_errors=True)
    shutil.rmtree(out / "fresh", ignore_errors=True)  # snapshots of an earlier training
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    ds = training_pairs(run_dir, cfg, split)
    num_items = pq.read_metadata(run_dir / "data" / "items.parquet").num_rows
    np.save(out / SAMPLING_FILE, target_log_frequency(ds, num_items))
    tc = cfg.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run_config": config_to_dict(cfg),
            "run_dir": str(run_dir.resolve()),
            **loop_extras,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers,
            use_gpu=tc.use_gpu,
            resources_per_worker={"CPU": tc.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=f"train-{model_name(cfg)}",
            storage_path=str((out / "ray_train").resolve()),
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or [],
            # Train v2's RunConfig; the type stubs still describe v1's, which lacks it.
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(tc.threads_per_worker)}},  # type: ignore[call-arg]
        ),
        datasets={"train": ds},
    )
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    return trainer.fit()
