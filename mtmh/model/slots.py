"""Several trainings of one run through a few long-lived Ray Train worker groups ("slots").

A TorchTrainer costs about 20 CPU-seconds before its first step: a controller, a worker
group, a data coordinator and the actors that watch them, each a new process that imports
Ray. A pipeline run trains eight variants, three at a time, and a trainer for each paid that
eight times. Here `concurrent` trainers start once. Each one's workers take variants from
one `VariantQueue` until it is empty, and train each as a training of its own
(`train_in_worker`: its own model, optimizer, early stopping, outputs and metrics), so a
variant learns exactly what it learns under `fit`. The queue hands variants out in order,
so the first variants start first, as they did with a trainer each.

Ray Train's restart (`train.max_failures`) resumes a slot with the variant it was training:
the queue keeps each slot's variant until the slot finishes it, and the checkpoint carries
the training's name (`restore` starts anew when it is another training's).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mtmh.config import RunConfig, TrainConfig, build_config, config_to_dict
from mtmh.model.harness import make_trainer
from mtmh.model.train_loop import ReadPairs, start_clean, train_in_worker
from mtmh.model.training import TrainingFailed, write_summary

POLL_S = 1.0  # how often the driver looks for finished variants
FinalRow = dict[str, Any]


class VariantQueue:
    """The variants waiting for a slot, the one each slot trains, and the finished ones with
    their final metrics row. A Ray actor that the driver and every worker of every slot call.

    Every rank of a slot calls `finish` and then `take`, in any interleaving: `finish` frees
    the slot only of the variant it names, so a rank that finishes first takes the next
    variant, and a later rank, whose `finish` no longer matches, takes the same one."""

    def __init__(self, names: list[str]) -> None:
        self.waiting = list(names)
        self.taken: dict[int, str] = {}
        self.finished: list[tuple[str, FinalRow]] = []

    def take(self, slot: int) -> str | None:
        """The variant `slot` trains: the one it holds (also after a restart), else the next
        waiting one, else None."""
        if slot not in self.taken and self.waiting:
            self.taken[slot] = self.waiting.pop(0)
        return self.taken.get(slot)

    def finish(self, slot: int, name: str, final: FinalRow | None) -> None:
        """`slot` is done with `name`; rank 0 passes its final metrics row."""
        if self.taken.get(slot) == name:
            del self.taken[slot]
        if final is not None:
            self.finished.append((name, final))

    def held_by(self, slot: int) -> str | None:
        return self.taken.get(slot)

    def status(self, seen: int) -> tuple[list[tuple[str, FinalRow]], int, int]:
        """The finished variants after the first `seen`, and how many wait and train."""
        return self.finished[seen:], len(self.waiting), len(self.taken)


def slot_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker function of a slot: train variants from the queue until it is
    empty."""
    import ray
    import ray.train

    queue, slot = config["queue"], config["slot"]
    run_dir = Path(config["run_dir"])
    configs = {name: build_config(c) for name, c in config["run_configs"].items()}
    rank = ray.train.get_context().get_world_rank()
    while (name := ray.get(queue.take.remote(slot))) is not None:
        started = time.perf_counter()
        cfg = configs[name]
        torch.set_num_threads(cfg.train.threads_per_worker)
        shard = ray.train.get_dataset_shard(config["datasets"][name])
        final = train_in_worker(cfg, run_dir, shard, config)
        row = {**final, "seconds": time.perf_counter() - started} if rank == 0 else None
        ray.get(queue.finish.remote(slot, name, row))


def training_cores(tc: TrainConfig) -> int:
    """The cores one training keeps busy: its workers' torch threads."""
    return tc.num_workers * tc.threads_per_worker


def slot_train_config(configs: dict[str, RunConfig]) -> TrainConfig:
    """The worker group settings every variant shares (a slot trains any of them)."""
    first = next(iter(configs.values())).train
    fields = ("num_workers", "use_gpu", "cpus_per_worker", "threads_per_worker", "max_failures")
    for name, cfg in configs.items():
        differ = [f for f in fields if getattr(cfg.train, f) != getattr(first, f)]
        if differ:
            raise ValueError(f"{name} differs from the other trainings in train.{differ[0]}")
    return first


def _fit_slot(
    tc: TrainConfig, slot: int, storage: Path, loop_config: dict[str, Any], datasets: dict
) -> str | None:
    """A Ray task holding one slot's TorchTrainer; its error, or None."""
    trainer = make_trainer(slot_loop_per_worker, loop_config, tc, f"slot-{slot}", storage, datasets)
    result = trainer.fit()
    return None if result.error is None else str(result.error)


def _slot_inputs(
    configs: dict[str, RunConfig], run_dir: Path, tc: TrainConfig, queue: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every slot's loop config, and the datasets of the trainer: each variant's earlier
    outputs removed, and each training pairs file read once, for the variants that share
    it."""
    paths = {name: start_clean(cfg, run_dir) for name, cfg in configs.items()}
    reads = {path: ReadPairs.read(path, tc.data_cpus) for path in dict.fromkeys(paths.values())}
    dataset_names = {path: f"pairs-{i}" for i, path in enumerate(reads)}
    loop_config = {
        "queue": queue,
        "run_dir": str(run_dir),
        "run_configs": {name: config_to_dict(cfg) for name, cfg in configs.items()},
        "datasets": {name: dataset_names[path] for name, path in paths.items()},
    }
    return loop_config, {dataset_names[path]: read.dataset for path, read in reads.items()}


def train_in_slots(
    configs: dict[str, RunConfig],
    run_dir: Path,
    concurrent: int,
    on_done: Callable[[str], None],
    on_idle_core: Callable[[], None] = lambda: None,
    **loop_extras: Any,
) -> dict[str, dict[str, Any]]:
    """Train each variant of `configs`, at most `concurrent` at a time, in as many slots;
    returns their summaries. Variants on the same training pairs share one read of them.
    `on_done(variant)` is called as each ends. `on_idle_core` is called whenever the running
    trainings keep fewer cores busy than the cluster has and none waits: the first moment
    other work can run without slowing them. `loop_extras` go to every worker as `fit`'s
    do (a test's planned failure)."""
    import ray

    run_dir = run_dir.resolve()  # as the workers see it
    tc = slot_train_config(configs)
    queue: Any = ray.remote(VariantQueue).options(num_cpus=0).remote(list(configs))
    loop_config, datasets = _slot_inputs(configs, run_dir, tc, queue)
    # Ray's run storage of the slots: started anew, or Ray Train would resume a slot from an
    # earlier run's checkpoint.
    storage = run_dir / "training_slots"
    shutil.rmtree(storage, ignore_errors=True)
    fit_slot = ray.remote(_fit_slot).options(num_cpus=0)
    running = {
        fit_slot.remote(
            tc, slot, storage, {**loop_config, **loop_extras, "slot": slot}, datasets
        ): slot
        for slot in range(min(concurrent, len(configs)))
    }
    cores = ray.cluster_resources().get("CPU", 1.0)
    summaries: dict[str, dict[str, Any]] = {}
    while running:
        ended, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
        finished, waiting, training = ray.get(queue.status.remote(len(summaries)))
        for name, final in finished:
            seconds = final.pop("seconds")
            summaries[name] = write_summary(configs[name], run_dir, final, seconds)
            on_done(name)
        for ref in ended:
            slot = running.pop(ref)
            if (error := ray.get(ref)) is not None:
                name = ray.get(queue.held_by.remote(slot))
                raise TrainingFailed(f"training {name} failed: {error}")
        if not waiting and training * training_cores(tc) < cores:
            on_idle_core()
    return summaries
