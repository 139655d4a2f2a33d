"""What every Ray Train worker loop of the project needs around its epochs, in small objects.

- `Progress`: the step counter, the epoch, the batches of that epoch already trained and the
  early-stopping state. It travels in every checkpoint with the model and the optimizer;
  `restore` brings all of them back when Ray Train restarts a failed worker group
  (`FailureConfig`), so a resumed run skips the batches it already trained and ends with the
  same number of steps.
- `EarlyStopping`: the best validation score, its epoch and its weights; says when
  `patience` epochs have passed without a gain.
- `Reporter`: the metrics rows. metrics.jsonl (rank 0) gets one every `report_every` steps
  with the pairs/s of its window. Ray (every rank must report) gets the rows that carry a
  checkpoint: every `checkpoint_every` steps, one per epoch with its validation, and the
  final row. Not every `report_every` rows: a Ray Train v2 worker's report waits until the
  controller has taken the previous one, and the controller looks every 2 s
  (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S), so a light model reporting every 20 steps spent
  more time waiting than training.
- `make_trainer`: the TorchTrainer with the project's failure, checkpoint and storage settings.

The worker function itself (mtmh/model/train_loop.py) is then a loop over epochs calling a
plain `train_epoch`, the shape of Ray's own templates.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtmh.config import TrainConfig

STATE_FILE = "state.pt"


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


@dataclass
class Progress:
    """Where a training stands; saved in every checkpoint."""

    stopper: EarlyStopping
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0  # batches of `epoch` trained so far
    skip: int = 0  # after a restart: the batches of `epoch` the failed run had trained


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(module, "module", module)
    assert isinstance(inner, torch.nn.Module)
    return inner


def save_checkpoint(
    model: torch.nn.Module, opt: torch.optim.Optimizer, progress: Progress, name: str
) -> Any:
    """A Ray Train Checkpoint of training `name`: its model, optimizer and progress."""
    import ray.train

    folder = Path(tempfile.mkdtemp(prefix="mtmh-ckpt-"))
    state = {
        "name": name,
        "model": unwrap(model).state_dict(),
        "optimizer": opt.state_dict(),
        "progress": progress,
    }
    torch.save(state, folder / STATE_FILE)
    return ray.train.Checkpoint.from_directory(str(folder))


def restore(
    model: torch.nn.Module, opt: torch.optim.Optimizer, patience: int, name: str
) -> Progress:
    """The progress of Ray Train's latest checkpoint, with the model and the optimizer loaded
    from it, when that checkpoint is of training `name`; a fresh Progress when the training
    starts anew. (A worker group that trains several models one after another, see
    mtmh/model/slots.py, restarts with the checkpoint of the one it was training.)"""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Progress(EarlyStopping(patience))
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
    if state.get("name") != name:
        return Progress(EarlyStopping(patience))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    progress: Progress = state["progress"]
    progress.skip, progress.step_in_epoch = progress.step_in_epoch, 0
    return progress


@dataclass
class Reporter:
    """Metrics rows to Ray and (rank 0) to metrics.jsonl, with checkpoints on schedule."""

    tc: TrainConfig
    path: Path | None  # metrics.jsonl on rank 0, None elsewhere
    checkpoint: Callable[[], Any]  # a Checkpoint of now (None off rank 0)
    world: int = 1
    rank: int = 0
    last_losses: dict[str, torch.Tensor] | None = None
    reported_step: int = 0
    window_start: float = field(default_factory=time.perf_counter)
    window_pairs: int = 0
    # Seconds this worker spent waiting for batches, in training steps, validating and
    # reporting (checkpoints included); the final row carries them as "time/<name>_s"
    # (summary.json's timings).
    seconds: dict[str, float] = field(
        default_factory=lambda: {"data": 0.0, "steps": 0.0, "validation": 0.0, "reports": 0.0}
    )

    def after_step(self, progress: Progress, pairs: int, losses: dict[str, torch.Tensor]) -> None:
        """Count the step's pairs; a metrics row on `report_every`, and a checkpoint reported
        to Ray on `checkpoint_every`."""
        self.window_pairs += pairs * self.world
        self.last_losses = losses
        step, tc = progress.step, self.tc
        if step % tc.report_every and step % tc.checkpoint_every:
            return
        row = self.window_row(progress.step, progress.epoch)
        if step % tc.checkpoint_every == 0:
            self.emit(row, self.save())
        else:
            self.write(row)
        self.reported_step = step

    def after_epoch(self, progress: Progress, epoch: int, values: dict[str, float]) -> None:
        """Epoch `epoch`'s row (its validation, and the last losses: a Tune scheduler's metric
        must be in every report) with a checkpoint of `progress` (the next epoch's start)."""
        losses = {k: float(v.detach()) for k, v in (self.last_losses or {}).items()}
        row = {"step": progress.step, "epoch": epoch, **losses, **values}
        self.emit(row, self.save())
        self.reported_step = -1  # the tail's losses still get their own row at the end

    def final(self, progress: Progress, epoch: int) -> dict[str, float]:
        """The last report: the final checkpoint, the tail steps since the last row (an epoch
        rarely ends on a report boundary) and the best epoch. Flagged "final", not "done":
        Ray Tune reads a reported "done" as the end of the trial. Returns the row."""
        stopper = progress.stopper
        row: dict[str, float] = {"step": progress.step, "final": 1.0}
        tail = progress.step > self.reported_step and self.window_pairs
        if self.last_losses is not None and tail:
            row = {**self.window_row(progress.step, epoch), "final": 1.0}
        if stopper.best_state is not None:
            row["val/best_epoch"] = stopper.best_epoch
            row["val/best_score"] = stopper.best_score
        row.update({f"time/{name}_s": round(s, 2) for name, s in self.seconds.items()})
        self.emit(row, self.save(), to_file="loss" in row)
        return row

    def window_row(self, step: int, epoch: int) -> dict[str, float]:
        assert self.last_losses is not None
        elapsed = time.perf_counter() - self.window_start
        row = {
            "step": step,
            "epoch": epoch,
            "pairs_per_s": self.window_pairs / elapsed if elapsed > 0 else 0.0,
            **{k: v.detach().item() for k, v in self.last_losses.items()},  # off the graph
        }
        self.window_start, self.window_pairs = time.perf_counter(), 0
        return row

    def save(self) -> Any:
        started = time.perf_counter()
        checkpoint = self.checkpoint()
        self.seconds["reports"] += time.perf_counter() - started
        return checkpoint

    def write(self, row: dict[str, float]) -> None:
        """A row to metrics.jsonl (rank 0 only)."""
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def emit(self, row: dict[str, float], checkpoint: Any, to_file: bool = True) -> None:
        """A row to metrics.jsonl and to Ray, with its checkpoint."""
        import ray.train

        started = time.perf_counter()
        if to_file:
            self.write(row)
        # Once report() has copied the checkpoint into the run's storage, the temporary
        # folder save_checkpoint wrote goes (it would otherwise stay in /tmp for good).
        ray.train.report(row, checkpoint=checkpoint, delete_local_checkpoint_after_upload=True)
        self.seconds["reports"] += time.perf_counter() - started


def make_trainer(
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    tc: TrainConfig,
    name: str,
    storage: Path,
    datasets: dict[str, Any],
    callbacks: list[Any] | None = None,
) -> Any:
    """A TorchTrainer running `loop` on `tc.num_workers` workers, restarting from the last
    checkpoint up to `tc.max_failures` times, keeping two checkpoints under `storage`."""
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers,
            use_gpu=tc.use_gpu,
            resources_per_worker={"CPU": tc.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage.resolve()),
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or [],
            # Train v2's RunConfig; the type stubs still describe v1's, which lacks it.
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(tc.threads_per_worker)}},  # type: ignore[call-arg]
        ),
        datasets=datasets,
    )
