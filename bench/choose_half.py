"""What the validation benches share, for the choose half of the validation split (the users
the serving order is chosen on, never T2): the users, a report row measured on them with the
evaluation's own protocol, its line, and the JSON they write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtmh.config import RunConfig
from mtmh.eval.protocol import REPORT_MODELS, EvalUser, ModelSpec, evaluate_source, holdout_users
from mtmh.preranker.train import fit_split

METRICS = ("recall@20", "recall@100", "recall@500", "ndcg@20")


def choose_users(cfg: RunConfig, run: Path) -> list[EvalUser]:
    _, choose = fit_split(cfg, run)
    return holdout_users(choose)


def report_spec(name: str) -> ModelSpec:
    """The report row called `name` (MTMH, EASE, ...)."""
    for spec in REPORT_MODELS:
        if spec.name == name:
            return spec
    raise SystemExit(f"no report row {name!r}; rows: {[s.name for s in REPORT_MODELS]}")


def measure_row(
    run: Path, spec: ModelSpec, cfg: RunConfig, users: list[EvalUser]
) -> dict[str, dict[str, float]]:
    """{order: metrics} of one report row on `users`, at the served alpha."""
    alpha = cfg.eval.alpha
    by = evaluate_source(run, [spec], cfg, users, [alpha])[spec.name]["by_ranking"]
    return {order: by[order][alpha] for order in by}


def row_line(name: str, result: dict[str, dict[str, float]], note: str = "") -> str:
    """One row's preranker metrics and its ANN order's R@20 (percent), plus `note`."""
    pre, ann = result["preranker"], result["ann"]
    cells = "  ".join(f"{m} {100 * pre[m]:.2f}" for m in METRICS)
    return f"{name:10s} preranker: {cells}  (ANN order R@20 {100 * ann['recall@20']:.2f}{note})"


def write_result(run: Path, file: str, payload: dict[str, Any], users: int, alpha: float) -> None:
    """RUN/eval/<file>, and the line that says so."""
    out = run / "eval" / file
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"users": users, **payload}, indent=2) + "\n")
    print(f"{users} validation users (the choose half), alpha {alpha:g}; wrote {out}")
