"""The gap between two report rows on the same users, user by user: is it larger than noise,
and can validation see it?

The report gives each row's recall with its own standard error. Two rows measured on the
same users share most of their noise (an easy user is easy for both), so the error of their
difference is the standard error of the per-user differences, usually far smaller than
either row's. This prints, per K, both rows' recall, the mean per-user difference with that
paired standard error, its z and the ratio of the means; once on the choose half of the
validation split (the users the serving order is chosen on, where a choice may look), and
once on the evaluation's T2 users (what the report says, where nothing may be tuned).

Each row is served as the evaluation serves it: its own preranker (the run's), at the served
alpha, in the order given (`preranker` or `ann`). Writes RUN/eval/paired_gap.json.

    .venv/bin/python bench/paired_gap.py --run runs/ml-1m --rows MTMH:preranker EASE:preranker
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from choose_half import choose_users, report_spec

from mtmh.config import RunConfig, load_config
from mtmh.eval.metrics import recall_at
from mtmh.eval.protocol import EvalUser, ModelSpec, sample_users, source_retriever
from mtmh.retrieval.merge import POOLING, pool
from mtmh.retrieval.ranking import RANKINGS

KS = (5, 20, 100, 500)


def per_user_recall(
    run: Path, spec: ModelSpec, order: str, users: list[EvalUser], cfg: RunConfig
) -> np.ndarray:
    """[users, len(KS)] recall of the row's pooled list, served in `order` at the served
    alpha (the evaluation's own steps, one user at a time)."""
    ret, _ = source_retriever(run, [spec], cfg)
    out = np.zeros((len(users), len(KS)))
    for i, u in enumerate(users):
        seen = u.history if cfg.eval.exclude_seen else ()
        searched = ret.search(u.triggers, seen)
        kept = ret.ordered(order, u.triggers, seen, searched)
        per_trigger = ret.merge({h: kept[h] for h in spec.heads}, cfg.eval.alpha, order)
        pooled = [item for item, _ in pool(per_trigger, cfg.eval.top_k, POOLING[order])]
        out[i] = list(recall_at(pooled, set(u.truth), KS).values())
    return out


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per K: both means, the mean difference a - b, its paired standard error, z, a / b."""
    diff = a - b
    n = len(diff)
    se = diff.std(axis=0, ddof=1) / np.sqrt(n)
    rows = {}
    for j, k in enumerate(KS):
        mean_a, mean_b = float(a[:, j].mean()), float(b[:, j].mean())
        rows[k] = {
            "a": mean_a,
            "b": mean_b,
            "diff": mean_a - mean_b,
            "paired_se": float(se[j]),
            "z": (mean_a - mean_b) / float(se[j]) if se[j] > 0 else float("nan"),
            "ratio": mean_a / mean_b if mean_b else float("nan"),
            "se_a": float(a[:, j].std(ddof=1) / np.sqrt(n)),
        }
    return {"users": n, "by_k": rows}


def _row(text: str) -> tuple[ModelSpec, str]:
    name, _, order = text.partition(":")
    order = order or "preranker"
    if order not in RANKINGS:
        raise SystemExit(f"{text}: the order must be one of {RANKINGS}")
    return report_spec(name), order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run")
    parser.add_argument(
        "--rows", nargs=2, default=["MTMH:preranker", "EASE:preranker"], metavar="ROW:ORDER"
    )
    args = parser.parse_args()
    cfg = load_config(args.run / "pipeline.yaml")
    (spec_a, order_a), (spec_b, order_b) = (_row(r) for r in args.rows)
    groups = {
        "validation (choose half)": choose_users(cfg, args.run),
        "T2 (the report's users)": sample_users(args.run, cfg.eval),
    }
    result: dict[str, Any] = {"rows": args.rows, "alpha": cfg.eval.alpha}
    for label, users in groups.items():
        a, b = (
            per_user_recall(args.run, spec, order, users, cfg)
            for spec, order in ((spec_a, order_a), (spec_b, order_b))
        )
        result[label] = paired(a, b)
        print(f"{label}, {len(users)} users: {args.rows[0]} against {args.rows[1]} (percent)")
        for k, r in result[label]["by_k"].items():
            print(
                f"  R@{k:<4d} {100 * r['a']:6.2f} vs {100 * r['b']:6.2f}  "
                f"diff {100 * r['diff']:+6.2f} ± {100 * r['paired_se']:.2f} (paired; "
                f"one row's SE {100 * r['se_a']:.2f})  z {r['z']:+5.2f}  ratio {r['ratio']:.3f}"
            )
    out = args.run / "eval" / "paired_gap.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
