"""Benchmark: what one training step costs on a run's own pairs, and what would make it cheaper.

One variant's task (`build_task`), its optimizer as in training, batches of the run's deduplicated
training pairs, one torch thread. For each mode it times `--steps` steps after a warm-up:

- `eager`: the training step as it runs today;
- `compile`: the task's forward through `torch.compile` (its compile time is the warm-up's);
- `bf16`: the forward under bfloat16 autocast on the CPU (changes every number it computes);
- `heap`: the eager step in a process whose freed blocks stay in its heap (`ray.malloc_keep_mb`,
  what every Ray worker of a job gets); the other modes run under glibc's defaults.

Each mode also reports the page faults per step: a fresh block from the kernel is zeroed one
page fault at a time.

With `--copies N` each mode runs in N processes at once, as N trainings share the cores in a
pipeline run; the per-step time is each copy's, side by side.

    .venv/bin/python bench/step_cost.py --run runs/ml-1m --variant mtmh
    .venv/bin/python bench/step_cost.py --run runs/ml-1m --modes eager --copies 2 3
    .venv/bin/python bench/step_cost.py --run runs/ml-1m --modes eager heap --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow.parquet as pq
import torch

MODES = ("eager", "compile", "bf16", "heap")


def time_steps(run: Path, variant: str, mode: str, steps: int, warmup: int) -> dict[str, float]:
    """{"ms_per_step", "warmup_s"} of `steps` steps of `variant` in `mode`, in this process."""
    from mtmh.config import load_config
    from mtmh.model.train_loop import build_task, make_optimizer
    from mtmh.model.training_pairs import ensure_training_pairs
    from mtmh.pipeline import variant_config

    torch.set_num_threads(1)
    base = load_config(run / "pipeline.yaml")
    cfg = variant_config(base, variant)  # type: ignore[arg-type]
    pairs = pq.read_table(ensure_training_pairs(run, base).path)
    trig = torch.from_numpy(pairs["trigger_id"].to_numpy().astype(np.int64))
    tgt = torch.from_numpy(pairs["target_id"].to_numpy().astype(np.int64))
    # Each distinct pair weighs count ** count_power, as the training loop weighs it.
    count = torch.from_numpy(pairs["count"].to_numpy().astype(np.float32)) ** cfg.train.count_power
    task = build_task(cfg, run)
    opt = make_optimizer(cfg, task.parameters())
    forward = torch.compile(task) if mode == "compile" else task
    b = cfg.train.batch_size

    def step(i: int) -> None:
        rows = slice(i * b, (i + 1) * b)
        extra = []
        if task.cluster_negatives is not None:  # a prompted variant, as in training
            extra = [task.cluster_negatives.sample(0, i)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            losses = forward(
                trig[rows], tgt[rows], task.negatives.sample(0, i), count[rows], *extra
            )
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()

    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    warm = time.perf_counter() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    return {
        "ms_per_step": 1000 * (time.perf_counter() - started) / steps,
        "warmup_s": warm,
        "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps,
    }


def side_by_side(args: argparse.Namespace, mode: str, copies: int) -> list[dict[str, float]]:
    """`copies` processes of one mode at once; each one's result."""
    command = [sys.executable, __file__, "--run", str(args.run), "--variant", args.variant]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--one", mode]
    from mtmh.config import RayConfig
    from mtmh.ray_utils import malloc_env

    tunables = malloc_env(1)  # the variables it sets, whatever their values
    env = {k: v for k, v in os.environ.items() if k not in tunables}  # glibc's defaults
    if mode == "heap":  # what init_ray gives every worker by default
        env.update(malloc_env(RayConfig().malloc_keep_mb))
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(copies)
    ]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--variant", default="mtmh")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--copies", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.one:
        print(json.dumps(time_steps(args.run, args.variant, args.one, args.steps, args.warmup)))
        return
    for mode in args.modes:
        for copies in args.copies:
            rows = side_by_side(args, mode, copies)
            each = ", ".join(f"{r['ms_per_step']:.1f}" for r in rows)
            warm = max(r["warmup_s"] for r in rows)
            faults = max(r["faults_per_step"] for r in rows)
            print(
                f"{args.variant} {mode:7s} x{copies}: {each} ms/step "
                f"({faults:.0f} page faults a step, warm-up {warm:.1f} s)"
            )


if __name__ == "__main__":
    main()
