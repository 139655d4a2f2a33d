"""Validation recall and topic match against the relevance head's reach (eval.relevance_k_ann).

The relevance head offers its preranker only its `relevance_k_ann` nearest candidates per
trigger; the engagement head offers all K_ann. For each value this measures, in preranker
order, MTMH at alpha 50 (and alpha 0, the relevance head alone) beside the engagement head
alone (MTMH-H1, which the reach does not touch), on the validation users the serving order is
chosen on, never T2. The run's saved preranker scores every value: the reach changes which
candidates it may choose from, not what it learned. Topic labels are read for the match rates
only, as the evaluation reads them.

    .venv/bin/python bench/relevance_k_ann_sweep.py --run runs/synthetic
    .venv/bin/python bench/relevance_k_ann_sweep.py --run runs/ml-1m --values 30 60 120 240

Prints one row per value and writes RUN/eval/relevance_k_ann_sweep.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mtmh.config import load_config
from mtmh.eval.diversity import EvalCatalog
from mtmh.eval.protocol import OrderMetrics, holdout_users
from mtmh.preranker.ranker import load_preranker
from mtmh.preranker.train import catalog_size, fit_split
from mtmh.retrieval.heads import load_model_heads
from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from mtmh.retrieval.retriever import Retriever

ROWS = {
    "MTMH-H1": ((ENGAGEMENT,), 100.0),
    "MTMH": ((ENGAGEMENT, RELEVANCE), 50.0),
    "MTMH-H2": ((RELEVANCE,), 0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--values", type=int, nargs="+", default=[30, 60, 120, 240, 2000])
    args = parser.parse_args()
    cfg = load_config(args.run / "pipeline.yaml")
    ec = cfg.eval
    _, choose = fit_split(cfg, args.run)
    users, catalog = holdout_users(choose), EvalCatalog.load(args.run)
    pre = load_preranker(args.run, "mtmh")
    heads = load_model_heads(args.run, "mtmh", pre.heads)
    n = catalog_size(args.run)
    print(
        f"{args.run}: {len(users)} validation users, K_ann {ec.k_ann_for(n)}, K "
        f"{ec.keep_per_head}; preranker order",
        flush=True,
    )
    out = []
    for value in args.values:
        reach = dataclasses.replace(ec, relevance_k_ann=value).relevance_k_ann_for(n)
        ret = Retriever(heads, ec.k_ann_for(n), ec.keep_per_head, pre, reach)
        acc = {name: OrderMetrics(ec, catalog) for name in ROWS}
        for u in users:
            kept = ret.preranked(u.triggers, u.history if ec.exclude_seen else ())
            for name, (row_heads, alpha) in ROWS.items():
                merged = ret.merge({h: kept[h] for h in row_heads}, alpha, "preranker")
                acc[name].add(u, merged, "preranker")
        row = {"relevance_k_ann": reach, **{name: a.result() for name, a in acc.items()}}
        out.append(row)
        h1, mtmh, h2 = row["MTMH-H1"], row["MTMH"], row["MTMH-H2"]
        print(
            f"reach {reach:5d}: MTMH R@20 {100 * mtmh['recall@20']:.2f} R@500 "
            f"{100 * mtmh['recall@500']:.2f} ({mtmh['recall@500'] / h1['recall@500']:.3f}x H1) "
            f"L2 {100 * mtmh['l2_match']:.2f} ({mtmh['l2_match'] / h1['l2_match'] - 1:+.1%} "
            f"over H1's {100 * h1['l2_match']:.2f}), unique {mtmh['unique_candidates']:.0f} | "
            f"H2 R@500 {100 * h2['recall@500']:.2f} L2 {100 * h2['l2_match']:.2f}",
            flush=True,
        )
    path = args.run / "eval" / "relevance_k_ann_sweep.json"
    path.write_text(json.dumps({"users": len(users), "rows": out}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
