"""Validation recall against K_ann, with and without the preranker, side by side.

K_ann is how many ANN candidates each head hands the preranker per trigger. For each value,
the model's preranker is refitted on the fit half of the validation split (its rows change
with K_ann), and both orders are measured on the choose half: the users the serving order is
chosen on, never T2. Nothing in the run is changed; the prerankers live in memory.

    .venv/bin/python bench/k_ann_sweep.py --run runs/ml-100k --model mtmh
    .venv/bin/python bench/k_ann_sweep.py --run runs/ml-1m --fractions 0.05 0.1 0.2 0.4

Prints one row per K_ann (recall@20/100/500 and NDCG@20 of both orders, and the preranker's
ratio to ANN order) and writes RUN/eval/k_ann_sweep.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mtmh.config import load_config
from mtmh.eval.diversity import EvalCatalog
from mtmh.eval.protocol import OrderMetrics, holdout_users
from mtmh.holdout import load_holdout
from mtmh.preranker.examples import build_examples
from mtmh.preranker.item_stats import ItemLog
from mtmh.preranker.ranker import Preranker
from mtmh.preranker.train import catalog_size, train_model
from mtmh.retrieval.heads import load_model_heads, model_heads
from mtmh.retrieval.retriever import Retriever


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", default="mtmh")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.2, 0.4],
        help="K_ann as a share of the catalog (eval.k_ann_max_catalog_fraction)",
    )
    args = parser.parse_args()
    cfg = load_config(args.run / "pipeline.yaml")
    split = load_holdout(args.run, cfg.holdout, cfg.eval.max_triggers)
    fit, choose = split.halves(cfg.holdout.seed, cfg.preranker.fit_fraction)
    n = catalog_size(args.run)
    item_log = ItemLog.from_run(args.run, split, n)
    order = model_heads(args.run, args.model)
    users, catalog = holdout_users(choose), EvalCatalog.load(args.run)
    rows = []
    for fraction in args.fractions:
        ec = dataclasses.replace(cfg.eval, k_ann_max_catalog_fraction=fraction)
        run_cfg = dataclasses.replace(cfg, eval=ec)
        heads = load_model_heads(args.run, args.model, order)
        ret = Retriever(heads, ec.k_ann_for(n), ec.keep_per_head, None, ec.relevance_k_ann_for(n))
        examples = build_examples(ret, order, fit.users, item_log, run_cfg)
        model, _ = train_model(examples, run_cfg, fit.users)
        ret.preranker = Preranker(model, order, item_log.at(item_log.end))
        acc = {o: OrderMetrics(ec, catalog) for o in ("preranker", "ann")}
        for u in users:
            seen = u.history if ec.exclude_seen else ()
            searched = ret.search(u.triggers)
            kept = {
                "preranker": ret.preranked(u.triggers, seen, searched),
                "ann": ret.ann_ordered(u.triggers, seen, searched),
            }
            for o, o_kept in kept.items():
                acc[o].add(u, ret.merge(o_kept, ec.alpha, o), o)
        row = {"k_ann": ret.k_ann, "fraction": fraction, **{o: a.result() for o, a in acc.items()}}
        rows.append(row)
        p, a = row["preranker"], row["ann"]
        print(
            f"K_ann {ret.k_ann:5d}: "
            + "  ".join(
                f"{m} pre {100 * p[m]:.2f} ann {100 * a[m]:.2f} ({p[m] / a[m]:.2f}x)"
                for m in ("recall@20", "ndcg@20", "recall@100", "recall@500")
            ),
            flush=True,
        )
    out = args.run / "eval" / "k_ann_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"model": args.model, "users": len(users), "rows": rows}, indent=2) + "\n"
    )
    print(f"{len(users)} validation users (the choose half); wrote {out}")


if __name__ == "__main__":
    main()
