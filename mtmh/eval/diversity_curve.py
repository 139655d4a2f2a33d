"""Diversity against recall for cluster-partitioned retrieval (divide and conquer): one model
searched globally and with every merge strategy at each number of clusters visited, measured
by the evaluation's protocol, and drawn as one plot.

The evaluation draws it for every run with clusters, for MTMH's engagement head on the first
`eval.diversity_curve_users` test users (RUN/diversity_curve.png, and a table in report.md);
bench/partitioned_retrieval.py draws it for any model, on every user or the validation
split. Each setting is one Ray task.

Example:
    point = curve_point(run_dir, cfg, [spec], users, ("uniform", 8))
    point["metrics"]["ann"]["MTMH-H1"]["topics_l2"]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mtmh.clusters.artifact import load_clusters
from mtmh.config import RunConfig
from mtmh.eval.diversity import EvalCatalog
from mtmh.eval.protocol import EvalUser, ModelSpec, accumulate, source_retriever
from mtmh.retrieval.partitioned import GLOBAL, MERGE_STRATEGIES
from mtmh.retrieval.retriever import Retriever
from mtmh.retrieval.served import is_prompted, partition

CURVE_FILE = "diversity_curve.png"
# The evaluation's curve: the spreading strategies ("score" stays close to the global search).
REPORT_STRATEGIES = ("affinity", "uniform")
REPORT_VISITS = (2, 4, 8, 16)


def curve_point(
    run_dir: Path,
    cfg: RunConfig,
    specs: list[ModelSpec],
    users: list[EvalUser],
    setting: tuple[str, int],
    temperature: float | None = None,
) -> dict[str, Any]:
    """One setting's metrics at the config's alpha: {"strategy", "visit", "metrics": {order:
    {row: metrics}}}. ("global", 0) is the global search; a prompted model (dat) has none,
    so there it is every cluster searched with its own query, merged by score."""
    import faiss

    faiss.omp_set_num_threads(1)
    strategy, visit = setting
    ret, heads = source_retriever(run_dir, specs, cfg)
    if strategy == GLOBAL and is_prompted(run_dir, specs[0].source):
        strategy, visit = "score", load_clusters(run_dir)[0].num_clusters
    if strategy != GLOBAL:
        cc = dataclasses.replace(
            cfg.clusters,
            visit=visit,
            strategy=strategy,  # type: ignore[arg-type]  # checked by ClusterConfig itself
            temperature=temperature or cfg.clusters.temperature,
        )
        heads = partition(run_dir, specs[0].source, heads, cc)
        ret = Retriever(heads, ret.k_ann, ret.keep, ret.preranker, ret.relevance_k_ann)
    alpha = cfg.eval.alpha
    catalog = EvalCatalog.load(run_dir)
    acc = accumulate(ret, specs, {s.name: [alpha] for s in specs}, users, cfg.eval, catalog)
    out: dict[str, Any] = {}
    for (order, name, _), metrics in acc.items():
        out.setdefault(order, {})[name] = metrics.result()
    # Labelled as asked ("global" for a prompted model too); "searched" says what ran.
    return {
        "strategy": setting[0],
        "visit": setting[1],
        "searched": [strategy, visit],
        "metrics": out,
    }


def report_settings(num_clusters: int) -> list[tuple[str, int]]:
    """The evaluation's curve: the global search, then each strategy at each visit."""
    visits = sorted({min(v, num_clusters) for v in REPORT_VISITS})
    return [(GLOBAL, 0)] + [(s, v) for s in REPORT_STRATEGIES for v in visits]


def plot_curve(rows: list[dict[str, Any]], row: str, order: str, path: Path) -> None:
    """Distinct L2 topics per user and catalog coverage against R@500, one line per strategy
    (points labelled by clusters visited), the global search as a star."""
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
        g = next(r["metrics"][order][row] for r in rows if r["strategy"] == GLOBAL)
        ax.scatter([100 * g["recall@500"]], [g[key]], marker="*", s=150, c="k", label=GLOBAL)
        ax.set_xlabel("R@500 (%)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"{row}, {order} order: partitioned retrieval (labels: clusters visited)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
