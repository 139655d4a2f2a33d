"""How long after a user's last trigger the items to find were engaged with: the validation
split's truth against the test period's.

The validation split holds out the end of each validation user's own T1 (mtmh/holdout.py);
T2 is everything after one global cut (mtmh/data/split.py). A signal that knows the user's
current session (windowed co-engagement, the rating UI's order) predicts a truth engaged
with minutes after the triggers, and not one engaged with months later. This prints, for
both, the days from the user's last trigger to each truth row: the median, and the shares
within an hour and a day.

    .venv/bin/python bench/truth_gap.py --run runs/ml-1m
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtmh.config import load_config
from mtmh.holdout import load_holdout

DAY = 86_400


def _summary(days: np.ndarray) -> dict[str, float]:
    return {
        "rows": len(days),
        "median_days": float(np.median(days)) if len(days) else float("nan"),
        "within_hour": float(np.mean(days < 1 / 24)) if len(days) else float("nan"),
        "within_day": float(np.mean(days < 1)) if len(days) else float("nan"),
    }


def validation_gaps(run: Path) -> np.ndarray:
    """Days from each validation user's last row before the cut to each held-out row."""
    cfg = load_config(run / "pipeline.yaml")
    split = load_holdout(run, cfg.holdout, cfg.eval.max_triggers)
    t1 = pq.read_table(run / "data" / "t1", columns=["user_id", "timestamp"])
    users, ts = t1["user_id"].to_numpy(), t1["timestamp"].to_numpy().astype(np.int64)
    gaps = []
    for u in split.users:
        mine = ts[users == u.user_id]
        before, after = mine[mine < u.cut], mine[mine >= u.cut]
        if len(before):
            gaps.append((after - before.max()) / DAY)
    return np.concatenate(gaps) if gaps else np.zeros(0)


def t2_gaps(run: Path) -> np.ndarray:
    """Days from each evaluation user's last T1 row to each of its T2 rows."""
    data = run / "data"
    t1 = pq.read_table(data / "t1", columns=["user_id", "timestamp"])
    t2 = pq.read_table(data / "t2", columns=["user_id", "timestamp"])
    people = pq.read_table(data / "users", columns=["user_id", "is_eval"])
    evaluated = people["user_id"].to_numpy()[people["is_eval"].to_numpy()]
    u1, ts1 = t1["user_id"].to_numpy(), t1["timestamp"].to_numpy().astype(np.int64)
    ids, inverse = np.unique(u1, return_inverse=True)
    last = np.full(len(ids), np.iinfo(np.int64).min)
    np.maximum.at(last, inverse, ts1)
    u2, ts2 = t2["user_id"].to_numpy(), t2["timestamp"].to_numpy().astype(np.int64)
    at = np.clip(np.searchsorted(ids, u2), 0, len(ids) - 1)
    keep = (ids[at] == u2) & np.isin(u2, evaluated)
    return (ts2[keep] - last[at[keep]]) / DAY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a prepared run")
    args = parser.parse_args()
    result = {
        "validation": _summary(validation_gaps(args.run)),
        "test": _summary(t2_gaps(args.run)),
    }
    for name, r in result.items():
        print(
            f"{name:10s} {r['rows']:7d} truth rows: {r['median_days']:.2f} days after the last "
            f"trigger (median); {100 * r['within_hour']:.1f}% within an hour, "
            f"{100 * r['within_day']:.1f}% within a day"
        )
    out = args.run / "eval" / "truth_gap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
