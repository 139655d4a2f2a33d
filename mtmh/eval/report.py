"""The evaluation report: report.json (machine-readable), report.md (the paper's table layout,
relative change against the classic ItemKNN in brackets, or ItemCF without it), both ranking
orders side by side, the validation curves, and the PNG plots of Figures 6a, 6b and 7."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = ("recall@5", "recall@20", "recall@100", "recall@500", "l1_match", "l2_match")
HEADERS = ("R@5", "R@20", "R@100", "R@500", "L1", "L2")


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _rel(value: float, base: float) -> str:
    if value is None or base is None or math.isnan(value) or math.isnan(base) or base == 0:
        return ""
    return f" ({100 * (value / base - 1):+.1f}%)"


def metrics_table(rows: dict[str, dict[str, float]], base: str | None, label: str) -> list[str]:
    lines = [f"| {label} | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    ref = rows.get(base) if base else None
    for name, m in rows.items():
        cells = [
            _pct(m[k]) + (_rel(m[k], ref[k]) if ref is not None and name != base else "")
            for k in METRICS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


ORDER_NAMES = {"preranker": "preranker", "ann": "ANN order"}


def orders_table(by_ranking: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Every model in both orders: recall, its standard error, topic match, unique pooled
    candidates per user."""
    lines = [
        "| model | order | R@20 | R@100 | R@500 (± s.e.) | L1 | L2 | unique candidates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = list(next(iter(by_ranking.values()), {}))
    for name in names:
        for order, rows in by_ranking.items():
            m = rows[name]
            lines.append(
                f"| {name} | {ORDER_NAMES.get(order, order)} | {_pct(m['recall@20'])} | "
                f"{_pct(m['recall@100'])} | {_pct(m['recall@500'])} "
                f"(± {_pct(m.get('recall@500_se', float('nan')))}) | {_pct(m['l1_match'])} | "
                f"{_pct(m['l2_match'])} | {m.get('unique_candidates', float('nan')):.0f} |"
            )
    return lines


def _ranking_lines(report: dict[str, Any]) -> list[str]:
    info = report.get("ranking") or {}
    chosen = str(info.get("chosen"))
    lines = [f"Serving order: **{ORDER_NAMES.get(chosen, chosen)}** ({info.get('how', '')})."]
    for order, m in (info.get("validation") or {}).items():
        lines.append(
            f"- validation, {ORDER_NAMES.get(order, order)}: R@100 {_pct(m['recall@100'])}, "
            f"R@500 {_pct(m['recall@500'])}"
        )
    return lines


def _validation_lines(report: dict[str, Any]) -> list[str]:
    curves = report.get("validation_curves") or {}
    if not curves:
        return ["No validation split (holdout.users=0): trainings ran a fixed number of epochs."]
    lines = ["| model | validation score by epoch (mean recall@100/@500 over heads) | best epoch |",
             "|---|---|---|"]  # fmt: skip
    for source, c in curves.items():
        scores = ", ".join(f"{100 * v:.2f}" for v in c["score"])
        lines.append(f"| {source} | {scores} | {c['best_epoch']} |")
    for meta in (report.get("peers") or {}).values():
        if "lambda" in meta:
            lines.append("")
            lines.append(
                f"EASE lambda {meta['lambda']:g}, chosen on validation from "
                + ", ".join(
                    f"{r['lambda']:g} ({_pct(r['recall@500'])})" for r in meta["lambda_curve"]
                )
                + " (validation R@500)."
            )
        elif "skipped" in meta:
            lines += ["", f"{meta['name']}: {meta['skipped']}."]
    return lines


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    base = "ItemKNN" if "ItemKNN" in report["models"] else "ItemCF"
    md = [
        f"# {report['dataset']}: MTMH evaluation",
        "",
        f"{report['protocol']['users']} users, up to {report['protocol']['max_triggers']} "
        f"triggers each; K_ann {report['protocol']['k_ann']} per head, "
        f"{report['protocol']['keep_per_head']} kept per head, top {report['protocol']['top_k']} "
        f"per user; MTMH at alpha {report['protocol']['alpha']:g}. Percent; in brackets the "
        f"change relative to {base}.",
        "",
        *_ranking_lines(report),
        "",
        *metrics_table(report["models"], base, "model"),
        "",
        "Standard error of R@500 over users (how large a gap is noise): "
        + ", ".join(
            f"{name} ±{100 * m['recall@500_se']:.2f}"
            for name, m in report["models"].items()
            if "recall@500_se" in m
        ),
        "",
        "## Every model with the preranker and in ANN order",
        "",
        "ANN order: each head's candidates in its own similarity order, pooled across triggers "
        "by summed similarity; no preranker. Unique candidates: distinct items a user's "
        "triggers pool before the top-K cut.",
        "",
        *orders_table(report.get("models_by_ranking") or {}),
        "",
        "## Alpha sweep (MTMH; alpha = engagement share of K, percent)",
        "",
        *metrics_table({f"alpha {r['alpha']:g}": r for r in report["alpha_sweep"]}, None, "alpha"),
        "",
        "Unique pooled candidates per user by alpha: "
        + "; ".join(
            f"{ORDER_NAMES.get(o, o)}: "
            + ", ".join(
                f"{r['alpha']:g} → {r.get('unique_candidates', float('nan')):.0f}" for r in rows
            )
            for o, rows in (report.get("alpha_sweep_by_ranking") or {}).items()
        ),
        "",
        "## Validation (the end of T1, never T2)",
        "",
        *_validation_lines(report),
        "",
        "## ANN recall of the IVF indexes against exact search",
        "",
        "| model/head | " + " | ".join(sorted(next(iter(report["ann_recall"].values())))) + " |",
        "|---" * (1 + len(next(iter(report["ann_recall"].values())))) + "|",
    ]
    for name, rec in report["ann_recall"].items():
        md.append(f"| {name} | " + " | ".join(f"{rec[k]:.4f}" for k in sorted(rec)) + " |")
    md += ["", "## Fresh-content convergence (mean L2 distance to the final embedding)", ""]
    fresh = report["fresh_convergence"]
    if fresh:
        md += ["| model | 25% of training | 50% | 75% |", "|---|---|---|---|"]
        for name, c in fresh.items():
            n = len(c["delta"])
            cells = [f"{c['delta'][min(n - 1, int(q * n))]:.4f}" for q in (0.25, 0.5, 0.75)]
            md.append(f"| {name} | " + " | ".join(cells) + " |")
    else:
        md.append("No fresh snapshots (train with train.fresh_snapshot_every).")
    md += ["", "Plots: recall_relevance.png (Fig. 6a), alpha_curve.png (6b), "
           "fresh_convergence.png (7), validation_curves.png.", ""]  # fmt: skip
    (out_dir / "report.md").write_text("\n".join(md))
    plot_report(report, out_dir)


def plot_report(report: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, m in report["models"].items():
        ax.scatter(100 * m["recall@500"], 100 * m["l2_match"], s=30)
        ax.annotate(name, (100 * m["recall@500"], 100 * m["l2_match"]), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set(xlabel="recall@500 (%)", ylabel="L2 topic match (%)",
           title=f"{report['dataset']}: recall vs relevance")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out_dir / "recall_relevance.png", dpi=120)
    plt.close(fig)

    sweep = report["alpha_sweep"]
    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = [r["alpha"] for r in sweep]
    ax.plot(alphas, [100 * r["recall@500"] for r in sweep], "o-", color="C0")
    ax.set(xlabel="alpha (engagement share, %)", ylabel="recall@500 (%)",
           title=f"{report['dataset']}: MTMH alpha sweep")  # fmt: skip
    ax2 = ax.twinx()
    ax2.plot(alphas, [100 * r["l2_match"] for r in sweep], "s--", color="C1")
    ax2.set_ylabel("L2 topic match (%)", color="C1")
    fig.tight_layout()
    fig.savefig(out_dir / "alpha_curve.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in (report.get("validation_curves") or {}).items():
        ax.plot([e + 1 for e in c["epochs"]], [100 * v for v in c["score"]], "o-", label=name)
    ax.set(xlabel="epoch", ylabel="validation recall (%, mean of @100 and @500)",
           title=f"{report['dataset']}: validation curves")  # fmt: skip
    if report.get("validation_curves"):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "validation_curves.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in report["fresh_convergence"].items():
        ax.plot(c["steps"], c["delta"], label=name)
    ax.set(xlabel="training step", ylabel="mean L2 distance to final embedding",
           title=f"{report['dataset']}: fresh-item convergence")  # fmt: skip
    if report["fresh_convergence"]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "fresh_convergence.png", dpi=120)
    plt.close(fig)
