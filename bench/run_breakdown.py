"""Where a pipeline run's time goes: per stage, and inside the train stage per overhead.

For each finished run given, it reads what the run recorded:
- the wall time of the pipeline and of each stage (RUN/logs/pipeline.log, the stage.json
  markers); the trainings run side by side, so the train stage is one wall-clock span;
- per training: its steps, epochs and wall seconds (RUN/models/<variant>/summary.json) and,
  for runs made since the training harness records them, rank 0's seconds in training steps,
  waiting for batches and validating ("timings");
- the log's time each training spent getting its pairs into the object store ("Dataset
  dataset_... finished" lines of the training tasks): a Ray Data groupby, shuffle and
  materialize per training before the pairs were shared, a read and materialize since (plus
  the one pyarrow pass per run, "training pairs: ... in X s"). Wall seconds, trainings side
  by side, so part of "the rest", not added to it.

Then it measures, in this process, side by side for every run on that run's own data with the
code checked out: one single-thread training step of each variant at the run's batch size
(after a warm-up) and one end-of-epoch validation. From those it splits the train stage's
CPU time (wall x cores) into compute (steps x step time + epochs x validation) and the rest:
start-up, data loading, pair preparation and the cost of three trainings sharing two cores.
The compute share is an estimate by construction (today's step time stands in for the
run's); the stage times are the runs' own.

    .venv/bin/python bench/run_breakdown.py --runs /tmp/fresh/runs/ml-100k runs/ml-100k
    .venv/bin/python bench/run_breakdown.py --runs runs/ml-1m-v2 runs/ml-1m-v3 --json out.json

With two runs, the last column is the ratio of the second run's seconds to the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow.parquet as pq
import torch

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
STAGE_DONE = re.compile(r"stage (\S+): done in ([\d.]+) s")
OLD_PAIRS = re.compile(
    r"\(_train_remote pid=\d+\).*Dataset dataset_\S+ execution finished in ([\d.]+) s"
)
NEW_PAIRS = re.compile(r"training pairs: \d+ rows from \d+ pairs in ([\d.]+) s")
# Since 3351b99 the driver reads the pairs once for the trainings that share them: a Ray Data
# execution of the driver's own (no "pid=" prefix) inside the train stage.
SHARED_READ = re.compile(r"^\S+ \S+\s+INFO .*Dataset dataset_\S+ execution finished in ([\d.]+) s")


def _time(line: str) -> float | None:
    m = STAMP.match(line)
    if not m:
        return None
    stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    return stamp.timestamp() + int(m.group(2)) / 1000


def read_log(run: Path) -> dict[str, Any]:
    """Stage seconds, the train stage's wall span and the pair preparation, from the log."""
    lines = (run / "logs" / "pipeline.log").read_text(errors="replace").splitlines()
    stamps = [t for t in map(_time, lines) if t is not None]
    stages: dict[str, float] = {}
    train_start = train_end = None
    shared = []
    for line in lines:
        if m := STAGE_DONE.search(line):
            kind = m.group(1).split(":")[0]
            stages[kind] = stages.get(kind, 0.0) + float(m.group(2))
        if "mtmh.pipeline: training " in line:
            train_start = _time(line)
        if train_start and train_end is None and "stage index:" in line and "starting" in line:
            train_end = _time(line)
        if train_start and train_end is None and (m := SHARED_READ.search(line)):
            shared.append(float(m.group(1)))
    if train_start and train_end:
        stages["train"] = train_end - train_start
    old = [float(m.group(1)) for line in lines if (m := OLD_PAIRS.search(line))]
    new = [float(m.group(1)) for line in lines if (m := NEW_PAIRS.search(line))] + shared
    return {
        "pipeline_s": stamps[-1] - stamps[0] if stamps else float("nan"),
        "stages_s": stages,
        "pair_preparations": len(old) + len(new),
        "pair_preparation_s": sum(old) + sum(new),
    }


def read_trainings(run: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for summary in sorted((run / "models").glob("*/summary.json")):
        s = json.loads(summary.read_text())
        out[s["name"]] = {
            "steps": s["steps"],
            "epochs": s["epochs_run"] or 0,
            "seconds": s["seconds"],
            "timings": s.get("timings") or {},
        }
    return out


def measure(run: Path, variants: list[str], steps: int) -> dict[str, dict[str, float]]:
    """{variant: {"step_s", "validation_s"}} measured here on `run`'s data."""
    from mtmh.config import load_config
    from mtmh.holdout import load_holdout
    from mtmh.model.step import train_step
    from mtmh.model.train_loop import build_task, make_optimizer, validate
    from mtmh.model.training_pairs import ensure_training_pairs
    from mtmh.pipeline import variant_config

    torch.set_num_threads(1)
    base = load_config(run / "pipeline.yaml")
    pairs = pq.read_table(ensure_training_pairs(run, base).path).slice(0, 64 * 1024)
    trig = torch.from_numpy(pairs["trigger_id"].to_numpy().astype(np.int64))
    tgt = torch.from_numpy(pairs["target_id"].to_numpy().astype(np.int64))
    split = load_holdout(run, base.holdout, base.eval.max_triggers)
    out = {}
    for variant in variants:
        cfg = variant_config(base, variant)  # type: ignore[arg-type]
        task = build_task(cfg, run)
        opt = make_optimizer(cfg, task.parameters())
        b, warmup = cfg.train.batch_size, 3
        for step in range(steps + warmup):
            if step == warmup:
                started = time.perf_counter()
            rows = slice((step * b) % (len(trig) - b), (step * b) % (len(trig) - b) + b)
            batch = {"trigger_id": trig[rows], "target_id": tgt[rows], "count": torch.ones(b)}
            if task.cluster_negatives is not None:  # a prompted variant (dat), as in training
                batch["cluster_negative_id"] = task.cluster_negatives.sample(0, step)
            train_step(task, opt, batch, task.negatives.sample(0, step))
        step_s = (time.perf_counter() - started) / steps
        started = time.perf_counter()
        validate(task, split, cfg.eval)
        out[variant] = {"step_s": step_s, "validation_s": time.perf_counter() - started}
        print(
            f"  {run.name} {variant}: {1000 * step_s:.1f} ms/step, validation "
            f"{out[variant]['validation_s']:.1f} s",
            flush=True,
        )
    return out


def breakdown(run: Path, steps: int, cores: int) -> dict[str, Any]:
    log = read_log(run)
    trainings = read_trainings(run)
    measured = measure(run, list(trainings), steps)
    compute = sum(t["steps"] * measured[v]["step_s"] for v, t in trainings.items())
    validation = sum(t["epochs"] * measured[v]["validation_s"] for v, t in trainings.items())
    train_cpu = log["stages_s"].get("train", float("nan")) * cores
    return {
        **log,
        "trainings": trainings,
        "measured": measured,
        "train_stage_cpu_s": train_cpu,
        "train_compute_s": compute,
        "train_validation_s": validation,
        "train_overhead_s": train_cpu - compute - validation,
    }


def print_table(names: list[str], results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, list[float]]] = [("pipeline (wall)", [r["pipeline_s"] for r in results])]
    stages = list(dict.fromkeys(k for r in results for k in r["stages_s"]))
    rows += [(f"  stage {k} (wall)", [r["stages_s"].get(k, 0.0) for r in results]) for k in stages]
    rows += [
        ("train stage CPU (wall x cores)", [r["train_stage_cpu_s"] for r in results]),
        ("  steps (measured step x steps)", [r["train_compute_s"] for r in results]),
        ("  validation (measured x epochs)", [r["train_validation_s"] for r in results]),
        ("  the rest: start-up, data, sharing cores", [r["train_overhead_s"] for r in results]),
        ("    of which pairs per training (log, wall)", [r["pair_preparation_s"] for r in results]),
    ]
    width = max(len(n) for n, _ in rows)
    head = f"{'seconds':<{width}} " + " ".join(f"{n[-18:]:>18}" for n in names)
    print(head + ("    ratio" if len(results) == 2 else ""))
    for name, values in rows:
        cells = " ".join(f"{v:>18.1f}" for v in values)
        ratio = f"   {values[1] / values[0]:6.2f}x" if len(values) == 2 and values[0] else ""
        print(f"{name:<{width}} {cells}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    results = [breakdown(run, args.steps, args.cores) for run in args.runs]
    print_table([str(r) for r in args.runs], results)
    if args.json:
        by_run = dict(zip(map(str, args.runs), results, strict=True))
        args.json.write_text(json.dumps(by_run, indent=2))


if __name__ == "__main__":
    main()
