"""Training the preranker on T1 with Ray Train, and loading it back for ranking.

`fit_preranker(cfg, run_dir)` streams the examples of `mtmh/preranker/examples.py` to a
`TorchTrainer` (DDP over `preranker.num_workers`), reports both task losses, checkpoints each
epoch (a restarted worker group resumes at the last finished epoch, `FailureConfig`), and
writes RUN/preranker/: model.pt, config.yaml, metrics.jsonl, summary.json.

Example:
    fit_preranker(cfg, Path("runs/ml-100k"))
    model = load_preranker(Path("runs/ml-100k"))
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from mtmh.config import RunConfig, build_config, config_to_dict, load_config, save_config
from mtmh.preranker.model import PrerankerModel
from mtmh.validation import load_holdout

STATE_FILE = "state.pt"


def preranker_dir(run_dir: Path) -> Path:
    return run_dir / "preranker"


def catalog_size(run_dir: Path) -> int:
    return pq.read_metadata(run_dir / "data" / "items.parquet").num_rows


def _loop(config: dict[str, Any]) -> None:
    """The Ray Train worker function."""
    import ray.train
    import ray.train.torch

    cfg = build_config(config["run_config"])
    pc = cfg.preranker
    run_dir = Path(config["run_dir"])
    torch.set_num_threads(pc.threads_per_worker)
    torch.manual_seed(cfg.seed)
    model = PrerankerModel(catalog_size(run_dir), pc)
    opt = torch.optim.Adam(model.parameters(), lr=pc.lr)
    epoch0 = step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch0, step = state["epoch"], state["step"]
    ddp = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    rank = ray.train.get_context().get_world_rank()
    metrics_path = preranker_dir(run_dir) / "metrics.jsonl"
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(epoch0, pc.epochs):
        started, seen = time.perf_counter(), 0
        sums: dict[str, float] = {}
        batches = 0
        for batch in shard.iter_torch_batches(
            batch_size=pc.batch_size,
            dtypes={"history": torch.int64, "target_id": torch.int64, "satisfied": torch.float32},
            drop_last=True,
            local_shuffle_buffer_size=8 * pc.batch_size,
            local_shuffle_seed=cfg.seed + epoch,
        ):
            if pc.max_steps is not None and step >= pc.max_steps:
                break
            losses = ddp(
                batch["history"].to(device), batch["target_id"].to(device),
                batch["satisfied"].to(device),
            )  # fmt: skip
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            step += 1
            batches += 1
            seen += len(batch["target_id"])
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        metrics = {
            "epoch": epoch,
            "step": step,
            "examples_per_s": seen / max(time.perf_counter() - started, 1e-9),
            **{k: v / max(batches, 1) for k, v in sums.items()},
        }
        ckpt = None
        if rank == 0:
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            folder = Path(tempfile.mkdtemp(prefix="mtmh-preranker-"))
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "epoch": epoch + 1, "step": step},
                folder / STATE_FILE,
            )  # fmt: skip
            ckpt = ray.train.Checkpoint.from_directory(str(folder))
        ray.train.report(metrics, checkpoint=ckpt)
    if rank == 0:
        out = preranker_dir(run_dir)
        torch.save(model.state_dict(), out / "model.pt")
        save_config(cfg, out / "config.yaml")


def fit_preranker(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Train the preranker on RUN/data/t1; returns the summary written to summary.json."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from mtmh.preranker.examples import example_dataset

    out = preranker_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(out / "ray_train", ignore_errors=True)  # else Ray Train resumes the old run
    pc = cfg.preranker
    started = time.perf_counter()
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"run_config": config_to_dict(cfg), "run_dir": str(run_dir.resolve())},
        scaling_config=ray.train.ScalingConfig(
            num_workers=pc.num_workers,
            use_gpu=pc.use_gpu,
            resources_per_worker={"CPU": pc.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name="preranker",
            storage_path=str((out / "ray_train").resolve()),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(pc.threads_per_worker)}},  # type: ignore[call-arg]
        ),
        datasets={
            "train": example_dataset(
                run_dir, pc, load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
            )
        },
    )
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"preranker training failed: {result.error}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = {
        "epochs": len(rows),
        "steps": rows[-1]["step"] if rows else 0,
        "seconds": round(time.perf_counter() - started, 1),
        "first": rows[0] if rows else {},
        "last": rows[-1] if rows else {},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_preranker(run_dir: Path) -> PrerankerModel:
    """The trained preranker of a run, in eval mode on the CPU."""
    out = preranker_dir(run_dir)
    path = out / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run ray_jobs/train_preranker.py first")
    cfg = load_config(out / "config.yaml")
    model = PrerankerModel(catalog_size(run_dir), cfg.preranker)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
