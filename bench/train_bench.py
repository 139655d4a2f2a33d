"""Benchmark: item-tower training under Ray Train (TorchTrainer, 1 worker) against a plain torch
loop over the same model, the same batch size and the same number of steps.

The data is the tests' generated run directory (`tests/tiny_data.write_tiny_run`: items with
side features, positive pairs and 128-d content embeddings) at benchmark size. Both sides
build the task with `build_task` (the MTMH variant, both heads, L_e and L_r), use Adagrad at
the config's learning rate, draw the same number of random negatives, and run with one torch
thread. Throughput is steady state: pairs per second after a warm-up
of `--warmup` steps, measured inside the loop on both sides (the Ray side reports it per
window to Ray; the start-up of Ray Train and its data pipeline is reported apart).

It also measures this machine's single-thread float32 matmul rate, and gives the share of it
that one training step reaches. Step FLOPs are counted from the model's matmuls (tower forward
for triggers, positives and negatives, the candidate logits per head and for the teacher,
backward taken as 2x forward): an estimate, good to a factor well under 2.

    python bench/train_bench.py                       # 200 steps, batch 2048
    python bench/train_bench.py --steps 400 --batch-size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The generated run comes from the tests' helpers; make the repository root importable when
# this runs as `python bench/train_bench.py`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import pyarrow.parquet as pq
import torch

from tests.tiny_data import write_tiny_run


def plain_loop(cfg, run: Path, steps: int, warmup: int) -> float:  # type: ignore[no-untyped-def]
    """Pairs/s of a bare torch loop after `warmup` steps."""
    from mtmh.model.step import train_step
    from mtmh.model.train_loop import build_task, make_optimizer
    from mtmh.model.training_pairs import ensure_training_pairs

    torch.set_num_threads(cfg.train.threads_per_worker)
    ensure_training_pairs(run, cfg)  # the logQ correction's target distribution
    task = build_task(cfg, run)
    opt = make_optimizer(cfg, task.parameters())
    pairs = pq.read_table(run / "data" / "pairs")
    trig = torch.from_numpy(pairs["trigger_id"].to_numpy().astype(np.int64))
    tgt = torch.from_numpy(pairs["target_id"].to_numpy().astype(np.int64))
    b = cfg.train.batch_size
    start = 0.0
    for step in range(steps):
        if step == warmup:
            start = time.perf_counter()
        sl = slice(step * b, (step + 1) * b)
        batch = {"trigger_id": trig[sl], "target_id": tgt[sl]}
        train_step(task, opt, batch, task.negatives.sample(0, step))
    return (steps - warmup) * b / (time.perf_counter() - start)


def ray_train(cfg, run: Path, warmup: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(steady pairs/s after `warmup` steps, wall seconds of the whole fit)."""
    from mtmh.model.curves import read_metrics
    from mtmh.model.train_loop import fit, model_dir

    started = time.perf_counter()
    result = fit(cfg, run)
    wall = time.perf_counter() - started
    assert result.error is None, result.error
    rows = [r for r in read_metrics(model_dir(run, cfg.model.variant) / "metrics.jsonl")]
    steady = [r for r in rows if r["step"] > warmup]
    # Each row's pairs_per_s covers the window since the previous report: weight by steps.
    window = cfg.train.report_every
    seconds = sum(window * cfg.train.batch_size / r["pairs_per_s"] for r in steady)
    return len(steady) * window * cfg.train.batch_size / seconds, wall


def matmul_rate(n: int = 1024, repeats: int = 20) -> float:
    """Single-thread float32 matmul FLOP/s on an n x n problem."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def step_flops(cfg, in_dim: int) -> float:  # type: ignore[no-untyped-def]
    """Approximate FLOPs of one training step (forward + backward as 3x forward)."""
    m, b, neg = cfg.model, cfg.train.batch_size, cfg.model.num_random_negatives
    rows, heads, h = 2 * b + neg, 2, m.hidden_dim
    tower = 2 * rows * (in_dim * h + heads * (h * h + h * m.dim))
    logits = 2 * b * (b + neg) * m.dim * (heads + 1)  # two student heads and the teacher
    return 3.0 * (tower + logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=Path("runs/train_bench.json"))
    args = parser.parse_args()

    from mtmh.config import RayConfig, build_config
    from mtmh.ray_utils import init_ray

    # The tests' generated run, at benchmark size (throughput does not depend on the pairs).
    run = write_tiny_run(
        Path(tempfile.mkdtemp(prefix="train-bench-")),
        args.items,
        args.steps * args.batch_size,
        dim=128,
    )
    cfg = build_config(
        overrides=[
            "model.variant=mtmh",
            f"train.batch_size={args.batch_size}",
            f"train.max_steps={args.steps}",
            "train.report_every=10",
            "train.checkpoint_every=100000",
            "train.cpus_per_worker=1",
            "train.threads_per_worker=1",
            "holdout.users=0",
        ]
    )
    plain = plain_loop(cfg, run, args.steps, args.warmup)
    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=1024))
    ray_rate, ray_wall = ray_train(cfg, run, args.warmup)
    rate = matmul_rate()
    in_dim = cfg.model.id_dim + cfg.model.cat_dim + cfg.model.dense_dim
    flops = step_flops(cfg, in_dim)
    steps_per_s = ray_rate / args.batch_size
    result = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "items": args.items,
        "pairs_per_s": {"plain_torch": round(plain, 1), "ray_train": round(ray_rate, 1)},
        "ratio_ray_over_plain": round(ray_rate / plain, 3),
        "ray_fit_wall_seconds": round(ray_wall, 1),
        "matmul_gflops_1_thread": round(rate / 1e9, 2),
        "step_gflops_estimate": round(flops / 1e9, 2),
        "matmul_share": round(flops * steps_per_s / rate, 3),
    }
    print(f"\nMTMH, batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up), 1 thread")
    print(f"  plain torch loop    : {plain:10.1f} pairs/s")
    print(f"  Ray Train, 1 worker : {ray_rate:10.1f} pairs/s  (fit wall {ray_wall:.1f} s)")
    print(f"  ratio Ray / plain   : {result['ratio_ray_over_plain']:.3f} (target >= 0.9)")
    print(f"  matmul rate         : {rate / 1e9:.2f} GFLOP/s (1 thread, 1024^3)")
    print(
        f"  step                : ~{flops / 1e9:.2f} GFLOP; Ray reaches "
        f"{result['matmul_share']:.0%} of the matmul rate"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
