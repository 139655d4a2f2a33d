"""Distributed training of the item tower on Ray Train (TorchTrainer, DDP).

`fit(cfg, run_dir)` builds a `TorchTrainer`: the positive pairs of RUN/data/pairs stream to
the workers as Ray Data shards (the driver never holds them), each worker runs
`train_loop_per_worker`, metrics are reported to Ray every `train.report_every` steps, and
checkpoints every `train.checkpoint_every` steps and at the end. With `FailureConfig`, a failed
worker group restarts from the last checkpoint: the model, optimizer and step counter come
back, and the batches of the interrupted epoch that were already trained are skipped, so the
run ends with the same number of steps.

Outputs in RUN/models/<variant>/: model.pt, config.yaml, metrics.jsonl (one row per report),
embeddings/<head>.parquet (item_id, embedding), ray_train/ (Ray's own run storage) and, with
`train.fresh_snapshot_every`, fresh/step-<N>.npz: the embeddings of the least-engaged items
at every N-th step, for the fresh-content convergence analysis (spec section 7).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.config import RunConfig, build_config, config_to_dict, save_config
from mtmh.model.inputs import load_item_tables
from mtmh.model.task import RetrievalTask
from mtmh.model.tower import ItemTower
from mtmh.model.variants import get_variant

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"


def model_name(cfg: RunConfig) -> str:
    """Where a training's outputs go: `model.name`, else the variant's name."""
    return cfg.model.name or cfg.model.variant


def model_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "models" / name


def build_task(cfg: RunConfig, run_dir: Path) -> RetrievalTask:
    variant = get_variant(cfg.model.variant)
    tables, log_pop = load_item_tables(
        run_dir,
        teacher=variant.needs_teacher_logits or "teacher" in variant.inputs,
        content_features="content_features" in variant.inputs,
    )
    torch.manual_seed(cfg.seed)
    tower = ItemTower(variant, tables, cfg.model)
    return RetrievalTask(tower, cfg.model, tables.teacher, log_pop)


def make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.train.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.train.lr)
    return torch.optim.Adam(params, lr=cfg.train.lr)


def sample_negatives(
    num_items: int, count: int, seed: int, rank: int, step: int, device: torch.device
) -> torch.Tensor:
    """[count] uniform item ids, a pure function of (seed, rank, step): a resumed run draws
    exactly the negatives the failed one would have."""
    gen = torch.Generator().manual_seed(hash((seed, rank, step)) & 0x7FFF_FFFF)
    return torch.randint(0, num_items, (count,), generator=gen).to(device)


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
                step_in_epoch: int) -> Any:  # fmt: skip
    import ray.train

    folder = Path(tempfile.mkdtemp(prefix="mtmh-ckpt-"))
    torch.save(
        {
            "model": _unwrap(task).state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
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
    num_items = task.tower.num_items
    opt = make_optimizer(cfg, task.parameters())
    step = epoch0 = skip = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
        task.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch0, skip = state["step"], state["epoch"], state["step_in_epoch"]
        log.info("rank %d resumed at step %d (epoch %d, +%d batches)", rank, step, epoch0, skip)
    ddp_task = ray.train.torch.prepare_model(task)
    device = ray.train.torch.get_device()
    metrics_path = model_dir(run_dir, model_name(cfg)) / "metrics.jsonl"
    fresh_ids = None
    if tc.fresh_snapshot_every is not None and rank == 0:
        fresh_ids = fresh_item_ids(run_dir, tc.fresh_max_interactions, tc.fresh_max_items)

    shard = ray.train.get_dataset_shard("train")
    window_start, window_pairs = time.perf_counter(), 0
    reported_step = step
    last_losses: dict[str, torch.Tensor] | None = None
    for epoch in range(epoch0, tc.epochs):
        step_in_epoch = 0
        batches = shard.iter_torch_batches(
            batch_size=tc.batch_size,
            dtypes=torch.int64,
            drop_last=True,
            local_shuffle_buffer_size=4 * tc.batch_size,
            local_shuffle_seed=cfg.seed + epoch,
        )
        for batch in batches:
            if epoch == epoch0 and step_in_epoch < skip:
                step_in_epoch += 1  # trained before the failure
                continue
            if tc.max_steps is not None and step >= tc.max_steps:
                break
            if fail_at_step is not None and step == fail_at_step:
                marker = Path(config["fail_marker"])
                if not marker.exists():
                    marker.write_text(f"failed at step {step}\n")
                    raise RuntimeError(f"planned failure at step {step} (test)")
            negatives = sample_negatives(
                num_items, cfg.model.num_random_negatives, cfg.seed, rank, step, device
            )
            losses = ddp_task(
                batch["trigger_id"].to(device), batch["target_id"].to(device), negatives
            )
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            step += 1
            step_in_epoch += 1
            if fresh_ids is not None and step % (tc.fresh_snapshot_every or 1) == 0:
                fresh_dir = model_dir(run_dir, model_name(cfg)) / "fresh"
                snapshot_fresh(task.tower, fresh_ids, fresh_dir / f"step-{step:07d}.npz")
            window_pairs += len(batch["trigger_id"]) * world
            last_losses = losses
            last = tc.max_steps is not None and step >= tc.max_steps
            if step % tc.report_every == 0 or step % tc.checkpoint_every == 0 or last:
                ckpt = None
                if step % tc.checkpoint_every == 0 and rank == 0:
                    ckpt = _save_state(ddp_task, opt, step, epoch, step_in_epoch)
                metrics = _metrics_row(step, epoch, window_pairs, window_start, losses)
                _log_metrics(metrics, metrics_path if rank == 0 else None, ckpt)
                reported_step = step
                window_start, window_pairs = time.perf_counter(), 0
        skip = 0
    # The last report carries the final checkpoint, and the tail steps since the last metrics
    # row (an epoch rarely ends on a report boundary). It is flagged "final", not "done":
    # Ray Tune reads a reported "done" as the end of the trial.
    final = _save_state(ddp_task, opt, step, tc.epochs, 0) if rank == 0 else None
    metrics = {"step": step, "final": 1.0}
    if last_losses is not None and step > reported_step:
        metrics = {
            **_metrics_row(step, tc.epochs - 1, window_pairs, window_start, last_losses),
            "final": 1.0,
        }
    _log_metrics(metrics, metrics_path if rank == 0 and "loss" in metrics else None, final)
    if rank == 0:
        write_outputs(_unwrap(ddp_task).tower, cfg, run_dir)  # type: ignore[arg-type]


def _metrics_row(
    step: int, epoch: int, pairs: int, since: float, losses: dict[str, torch.Tensor]
) -> dict[str, float]:
    elapsed = time.perf_counter() - since
    return {
        "step": step,
        "epoch": epoch,
        "pairs_per_s": pairs / elapsed if elapsed > 0 else 0.0,
        **{k: float(v) for k, v in losses.items()},
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

    pairs = run_dir / "data" / "pairs"
    if not pairs.is_dir():
        raise FileNotFoundError(f"{pairs} not found: run ray_jobs/prepare_data.py first")
    out = model_dir(run_dir, model_name(cfg))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    # A new training starts clean: Ray Train resumes from whatever checkpoint it finds under
    # the same storage path and name, so an earlier run's final checkpoint would make this
    # one train nothing. (Recovery from a failure inside this fit() is Ray's, unaffected.)
    shutil.rmtree(out / "ray_train", ignore_errors=True)
    shutil.rmtree(out / "fresh", ignore_errors=True)  # snapshots of an earlier training
    ds = ray.data.read_parquet(
        str(pairs), columns=["trigger_id", "target_id"], num_cpus=cfg.train.data_cpus
    )
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
