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

--split test (the default) measures on the report's T2 users, for the report's comparison;
--split validation on the validation users the preranker did not learn on, where a default
may be chosen. Prints one row per setting, writes RUN/eval/partitioned_<split>.json and
RUN/partitioned_<split>.png (distinct L2 topics per user and catalog coverage against R@500).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from mtmh.clusters.artifact import load_clusters
from mtmh.config import RunConfig, load_config
from mtmh.eval.diversity import EvalCatalog
from mtmh.eval.protocol import (
    EvalUser,
    ModelSpec,
    accumulate,
    holdout_users,
    sample_users,
    source_retriever,
)
from mtmh.preranker.train import fit_split
from mtmh.retrieval.partitioned import MERGE_STRATEGIES
from mtmh.retrieval.retriever import Retriever
from mtmh.retrieval.served import partition

COLUMNS = ("recall@100", "recall@500", "topics_l1", "topics_l2", "clusters", "ils")


def measure(
    run: Path,
    cfg: RunConfig,
    specs: list[ModelSpec],
    users: list[EvalUser],
    setting: tuple[str, int],
    temperature: float,
) -> dict[str, Any]:
    """One setting's metrics: {order: {spec: metrics}} at the config's alpha."""
    import faiss

    faiss.omp_set_num_threads(1)
    strategy, visit = setting
    ret, heads = source_retriever(run, specs, cfg)
    if strategy != "global":
        cc = dataclasses.replace(
            cfg.clusters, visit=visit, strategy=strategy, temperature=temperature
        )
        heads = partition(run, specs[0].source, heads, cc)
        ret = Retriever(heads, ret.k_ann, ret.keep, ret.preranker, ret.relevance_k_ann)
    alpha = cfg.eval.alpha
    acc = accumulate(
        ret,
        specs,
        {s.name: [alpha] for s in specs},
        users,
        cfg.eval,
        EvalCatalog.load(run),
    )
    out: dict[str, Any] = {}
    for (order, name, _), metrics in acc.items():
        out.setdefault(order, {})[name] = metrics.result()
    return {"strategy": strategy, "visit": visit, "metrics": out}


def plot(rows: list[dict[str, Any]], row: str, order: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in (
        (axes[0], "topics_l2", "distinct L2 topics per user (top 500)"),
        (axes[1], "coverage", "catalog coverage"),
    ):
        for strategy in [s for s in MERGE_STRATEGIES if any(r["strategy"] == s for r in rows)]:
            pts = sorted(
                (r["visit"], r["metrics"][order][row]) for r in rows if r["strategy"] == strategy
            )
            ax.plot(
                [100 * m["recall@500"] for _, m in pts],
                [m[key] for _, m in pts],
                marker="o",
                label=strategy,
            )
            for visit, m in pts:
                ax.annotate(str(visit), (100 * m["recall@500"], m[key]), fontsize=7)
        g = next(r["metrics"][order][row] for r in rows if r["strategy"] == "global")
        ax.scatter([100 * g["recall@500"]], [g[key]], marker="*", s=150, c="k", label="global")
        ax.set_xlabel("R@500 (%)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"{row}, {order} order: partitioned retrieval (labels: clusters visited)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    task = ray.remote(measure).options(num_cpus=1)
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
    plot(rows, name, "ann", args.run / f"partitioned_{args.split}.png")
    print(f"\nwrote {out} and {args.run / f'partitioned_{args.split}.png'}")


if __name__ == "__main__":
    main()
