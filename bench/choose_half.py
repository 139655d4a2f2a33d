"""What the validation benches share: a row's line, and the JSON they write, for the choose
half of the validation split (the users the serving order is chosen on, never T2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = ("recall@20", "recall@100", "recall@500", "ndcg@20")


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
