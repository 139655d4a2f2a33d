"""Validation recall of each model's preranker at several satisfaction weights, side by side.

The preranker scores p(engage) * p(satisfied | engage) ** w (`preranker.satisfaction_weight`,
default 1). Its two tasks are learned either way; w only changes how they are combined, so
the run's fitted prerankers are scored again with each w, without refitting. Measured on the
choose half of the validation split (the users the serving order is chosen on, never T2),
with the evaluation's own protocol, at the served alpha. Nothing in the run is changed.

    .venv/bin/python bench/satisfaction_weight.py --run runs/ml-1m --models MTMH EASE
    .venv/bin/python bench/satisfaction_weight.py --run runs/ml-100k --weights 0 0.5 1 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from choose_half import choose_users, measure_row, report_spec, row_line, write_result

from mtmh.config import RunConfig, load_config
from mtmh.eval import protocol
from mtmh.eval.protocol import EvalUser
from mtmh.preranker.ranker import Preranker, load_preranker


def scored_with(weight: float) -> Any:
    """`load_preranker` whose model combines its two tasks with `weight`."""

    def load(run_dir: Path, source: str) -> Preranker:
        pre = load_preranker(run_dir, source)
        pre.model.satisfaction_weight = weight
        return pre

    return load


def measure(
    run: Path, cfg: RunConfig, name: str, users: list[EvalUser], weight: float
) -> dict[str, dict[str, float]]:
    """{order: metrics} of one report row on `users`, its preranker scored with `weight`."""
    protocol.load_preranker = scored_with(weight)  # the evaluation's own loading, patched
    try:
        return measure_row(run, report_spec(name), cfg, users)
    finally:
        protocol.load_preranker = load_preranker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["MTMH", "EASE"], help="report rows")
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.5, 0.0])
    args = parser.parse_args()
    cfg = load_config(args.run / "pipeline.yaml")
    users = choose_users(cfg, args.run)
    rows = []
    for weight in args.weights:
        for name in args.models:
            result = measure(args.run, cfg, name, users, weight)
            rows.append({"weight": weight, "model": name, **result})
            print(f"w {weight:g}  " + row_line(name, result), flush=True)
    write_result(args.run, "satisfaction_weight.json", {"rows": rows}, len(users), cfg.eval.alpha)


if __name__ == "__main__":
    main()
