"""Refit some models' prerankers with this tree's features and settings, and measure them on
validation: what a preranker change does, before a full run.

For each report row named, the model's preranker is fitted again on the fit half of the
validation split (`fit_prerankers`, as the pipeline does, with `--set` overrides), then the
row is evaluated on the choose half (the users the serving order is chosen on, never T2)
with the evaluation's own protocol, at the served alpha, in both orders. With `--coverage`,
it also prints the share of those users' future items found anywhere in the model's K_ann
lists (all heads, all triggers): the most any ranking of its candidates could recall.

It overwrites RUN/preranker/<model>/ and RUN/preranker/item_stats.npz: run it on a copy of
a run (`cp -r runs/ml-1m /tmp/ml-1m-copy`).

    .venv/bin/python bench/preranker_refit.py --run /tmp/ml-1m-copy --models MTMH EASE --coverage
    .venv/bin/python bench/preranker_refit.py --run /tmp/ml-1m-copy --set preranker.hidden_dim=128
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from choose_half import choose_users, measure_row, report_spec, row_line, write_result

from mtmh.config import RunConfig, load_config
from mtmh.eval.protocol import EvalUser, ModelSpec, source_retriever
from mtmh.preranker.train import fit_prerankers


def coverage(run: Path, spec: ModelSpec, cfg: RunConfig, users: list[EvalUser]) -> dict[str, Any]:
    """The mean share of each user's future items among the row's searched candidates."""
    ret, _ = source_retriever(run, [spec], cfg)
    covered, unique = [], []
    for u in users:
        searched = ret.search(u.triggers, u.history)
        ids = np.unique(np.concatenate([searched[h].ids.ravel() for h in spec.heads]))
        ids = np.setdiff1d(ids[ids >= 0], u.history)
        truth = np.fromiter(u.truth, np.int64)
        covered.append(float(np.isin(truth, ids).mean()) if len(truth) else 0.0)
        unique.append(len(ids))
    return {"truth_covered": float(np.mean(covered)), "unique_candidates": float(np.mean(unique))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a copy of a finished run")
    parser.add_argument("--models", nargs="+", default=["MTMH", "EASE"], help="report rows")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--coverage", action="store_true")
    args = parser.parse_args()

    from mtmh.ray_utils import init_ray

    cfg = load_config(args.run / "pipeline.yaml", args.set)
    specs = [report_spec(name) for name in args.models]
    init_ray(cfg.ray)
    fitted = fit_prerankers(cfg, args.run, sorted({s.source for s in specs}))
    users = choose_users(cfg, args.run)
    rows = []
    for spec in specs:
        result = measure_row(args.run, spec, cfg, users)
        model = fitted["models"][spec.source]
        row: dict[str, Any] = {
            "model": spec.name,
            **result,
            "check_logloss": model.get("best_check_logloss"),
        }
        if args.coverage:
            row.update(coverage(args.run, spec, cfg, users))
        rows.append(row)
        note = f"; check logloss {row['check_logloss']:.4f}"
        if args.coverage:
            note += f"; covered {100 * row['truth_covered']:.2f} of {row['unique_candidates']:.0f}"
        print(row_line(spec.name, result, note), flush=True)
    write_result(
        args.run,
        "preranker_refit.json",
        {"set": args.set, "rows": rows},
        len(users),
        cfg.eval.alpha,
    )


if __name__ == "__main__":
    main()
