"""Diversity against recall for cluster-partitioned retrieval (divide and conquer): every
merge strategy at every number of clusters visited, beside the global search.

For a run with clusters (RUN/clusters, from ray_jobs/cluster_catalog.py or the pipeline), each
of a model's heads is searched cluster by cluster (mtmh/retrieval/partitioned.py): a trigger
visits its `visit` nearest clusters, and the strategy (score, affinity, uniform) decides each
cluster's share of the trigger's K. The rest is the evaluation's: the same users, triggers,
exclusions, alpha merge, pooling and metrics, in both orders (the run's preranker reorders a
partitioned head's K; ANN order keeps them). Each setting is one Ray task.

    .venv/bin/python bench/partitioned_retrieval.py --run runs/ml-1m
    .venv/bin/python bench/partitioned_retrieval.py --run runs/synthetic --split validation \
        --visits 1 2 4 8 --strategies uniform score

A prompted model (--model dat) has no global search: its "global" row is every cluster
searched with its own query, merged by score.

--split test (the default) measures on the report's T2 users, for the report's comparison;
--split validation on the validation users the preranker did not learn on, where a default
may be chosen. Prints one row per setting, writes RUN/eval/partitioned_<split>.json and
RUN/partitioned_<split>.png (distinct L2 topics per user and catalog coverage against R@500).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mtmh.clusters.artifact import load_clusters
from mtmh.config import load_config
from mtmh.eval.diversity_curve import curve_point, plot_curve
from mtmh.eval.protocol import ModelSpec, holdout_users, sample_users
from mtmh.preranker.train import fit_split
from mtmh.retrieval.partitioned import MERGE_STRATEGIES

COLUMNS = ("recall@100", "recall@500", "topics_l1", "topics_l2", "clusters", "ils")


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", default="mtmh", help="a trained variant with its preranker")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--visits", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--strategies", nargs="+", default=list(MERGE_STRATEGIES))
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=0.1, help="of 'affinity'")
    args = parser.parse_args()
    cfg = load_config(args.run / "pipeline.yaml")
    if args.split == "test":
        users = sample_users(args.run, cfg.eval)
    else:
        users = holdout_users(fit_split(cfg, args.run)[1])
    users = users[: args.max_users]
    heads = ("engagement", "relevance") if args.model in ("mtmh", "stmh") else ("engagement",)
    name = args.model.upper()
    specs = [ModelSpec(name, args.model, heads)]
    if len(heads) == 2:
        specs += [ModelSpec(f"{name}-H1", args.model, heads[:1])]
    _, meta = load_clusters(args.run)
    settings = [("global", 0)] + [(s, v) for s in args.strategies for v in args.visits]
    print(
        f"{args.run}: {len(users)} {args.split} users, {meta['num_clusters']} clusters of "
        f"{meta['source']}/{meta['head']}; {len(settings)} settings",
        flush=True,
    )
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    task = ray.remote(curve_point).options(num_cpus=1)
    users_ref = ray.put(users)
    rows = ray.get(
        [task.remote(args.run, cfg, specs, users_ref, s, args.temperature) for s in settings]
    )
    for order in ("ann", "preranker"):
        for spec in specs:
            print(f"\n{spec.name}, {order} order")
            print(f"{'setting':>14} " + " ".join(f"{c:>11}" for c in (*COLUMNS, "coverage")))
            for r in rows:
                m = r["metrics"][order][spec.name]
                label = r["strategy"] + (f"@{r['visit']}" if r["visit"] else "")
                cells = [
                    100 * m[c] if c.startswith("recall") else m.get(c, float("nan"))
                    for c in COLUMNS
                ]
                print(f"{label:>14} " + " ".join(f"{v:11.3f}" for v in [*cells, m["coverage"]]))
    out = args.run / "eval" / f"partitioned_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"clusters": meta, "users": len(users), "rows": rows}, indent=1) + "\n"
    )
    plot_curve(rows, name, "ann", args.run / f"partitioned_{args.split}.png")
    print(f"\nwrote {out} and {args.run / f'partitioned_{args.split}.png'}")


if __name__ == "__main__":
    main()
