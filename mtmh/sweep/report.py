"""The sweep's outputs: wr_sweep.json (one object per trial), wr_sweep.md (the paper's Table 4
layout: mean over seeds ± standard error, change relative to w_r = 0.5; the alpha sweep the
same way; and whether relevance rises with w_r beyond the seeds' noise) and wr_sweep.png
(every (w_r, alpha) point on the recall-relevance plane, with the Pareto front), plus the
recommended point.

Standard errors are over seeds (s.d. / sqrt(n)): the spread of retraining, which a single
seed cannot show. A difference counts as beyond the noise when it exceeds twice the standard
error of the difference, sqrt(se_a^2 + se_b^2).

The recommendation: among all (w_r, alpha) points whose recall@500 is at least that of the
same trial's engagement head (alpha = 100) minus `sweep.recall_tolerance`, the one with the
highest L2 match (ties: higher recall@500, then smaller w_r).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from mtmh.config import RunConfig, config_to_dict
from mtmh.eval.report import METRICS, synthetic_notice
from mtmh.sweep.trial import alpha_key

REFERENCE_W_R = 0.5  # Table 4 reports changes relative to the paper's default
SEED_METRICS = (*METRICS, "l1_lift", "l2_lift")


def trial_objects(records: list[dict[str, Any]], cfg: RunConfig) -> list[dict[str, Any]]:
    """The JSON objects: w_r, seed, status, metrics (serving alpha) and the alpha sweep."""
    alphas = sorted({*cfg.eval.alphas, cfg.eval.alpha})
    out = []
    for r in records:
        m = r["metrics"]
        obj: dict[str, Any] = {"w_r": r["w_r"], "seed": r["seed"], "status": r["status"]}
        if r["status"] == "evaluated":
            obj["metrics"] = {k: m[k] for k in SEED_METRICS if k in m}
            obj["alpha_sweep"] = [
                {
                    "alpha": a,
                    **{k: m[alpha_key(a, k)] for k in SEED_METRICS if alpha_key(a, k) in m},
                }
                for a in alphas
            ]
        else:
            obj["error"] = r["error"]
            obj["last_reported"] = {k: v for k, v in m.items() if isinstance(v, int | float)}
        out.append(obj)
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN error for fewer than two values)."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return float("nan"), float("nan")
    mean = sum(clean) / len(clean)
    if len(clean) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in clean) / (len(clean) - 1)
    return mean, math.sqrt(var / len(clean))


def _summarise(groups: dict[float, list[dict[str, float]]]) -> dict[float, dict[str, float]]:
    out = {}
    for key, rows in sorted(groups.items()):
        stats: dict[str, float] = {"seeds": len(rows)}
        for k in SEED_METRICS:
            stats[k], stats[f"{k}_se"] = mean_se([r.get(k, float("nan")) for r in rows])
        out[key] = stats
    return out


def mean_by_w_r(trials: list[dict[str, Any]]) -> dict[float, dict[str, float]]:
    """Per w_r, metrics at the serving alpha: mean over seeds, and `<metric>_se`."""
    groups: dict[float, list[dict[str, float]]] = defaultdict(list)
    for t in trials:
        if "metrics" in t:
            groups[t["w_r"]].append(t["metrics"])
    return _summarise(groups)


def mean_by_alpha(trials: list[dict[str, Any]], w_r: float) -> dict[float, dict[str, float]]:
    """Per alpha, the trials of one w_r: mean over seeds, and `<metric>_se`."""
    groups: dict[float, list[dict[str, float]]] = defaultdict(list)
    for t in trials:
        if t["w_r"] == w_r:
            for row in t.get("alpha_sweep", []):
                groups[row["alpha"]].append(row)
    return _summarise(groups)


def seed_table(rows: dict[str, dict[str, float]], base: str | None, label: str) -> list[str]:
    """Mean ± s.e. per metric (percent; lifts as ratios), with the change against `base`."""
    heads = ["R@5", "R@20", "R@100", "R@500", "L1", "L2", "L1 lift", "L2 lift"]
    lines = [f"| {label} | seeds | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    ref = rows.get(base) if base else None
    for name, m in rows.items():
        cells = []
        for k in SEED_METRICS:
            scale, unit = (1, "x") if k.endswith("lift") else (100, "")
            mean, se = m.get(k, float("nan")), m.get(f"{k}_se", float("nan"))
            cell = "n/a" if math.isnan(mean) else f"{scale * mean:.2f}{unit}"
            if not math.isnan(se):
                cell += f" ± {scale * se:.2f}"
            if ref is not None and name != base and ref.get(k) and not math.isnan(mean):
                cell += f" ({100 * (mean / ref[k] - 1):+.1f}%)"
            cells.append(cell)
        lines.append(f"| {name} | {m['seeds']:.0f} | " + " | ".join(cells) + " |")
    return lines


def beyond_noise(
    a: dict[str, float], b: dict[str, float], metric: str
) -> tuple[float, float, bool]:
    """(b - a, s.e. of the difference, |difference| > 2 s.e.) of `metric` between two rows."""
    diff = b[metric] - a[metric]
    se = math.sqrt(
        a.get(f"{metric}_se", float("nan")) ** 2 + b.get(f"{metric}_se", float("nan")) ** 2
    )
    return diff, se, (not math.isnan(se)) and abs(diff) > 2 * se


def relevance_trend(means: dict[float, dict[str, float]], level: str = "l2_match") -> str:
    """One sentence: does relevance rise with w_r beyond the seeds' noise?"""
    if len(means) < 2:
        return "Fewer than two w_r values: no trend to test."
    low, high = min(means), max(means)
    diff, se, real = beyond_noise(means[low], means[high], level)
    if math.isnan(se):
        return (
            f"{level} moves by {100 * diff:+.2f} points from w_r {low:g} to {high:g}; with "
            "one seed per w_r there is no standard error, so this says nothing about noise."
        )
    steps = sorted(means)
    rising = [
        f"{a:g}->{b:g}"
        for a, b in itertools.pairwise(steps)
        if beyond_noise(means[a], means[b], level)[2] and means[b][level] > means[a][level]
    ]
    verdict = (
        "rises beyond the noise"
        if real and diff > 0
        else ("falls beyond the noise" if real else "does not move beyond the noise")
    )
    return (
        f"{level.replace('_match', '').upper()} match {verdict} from w_r {low:g} to {high:g}:"
        f" {100 * diff:+.2f} points against a standard error of the difference of "
        f"{100 * se:.2f} (beyond the noise means more than twice that). Steps that rise "
        f"beyond the noise: {', '.join(rising) if rising else 'none'}."
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 >= x and y2 >= y) and (x2 > x or y2 > y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def recommend(trials: list[dict[str, Any]], tolerance: float) -> dict[str, Any] | None:
    best = None
    for t in trials:
        sweep = {row["alpha"]: row for row in t.get("alpha_sweep", [])}
        if 100.0 not in sweep:
            continue
        floor = sweep[100.0]["recall@500"] - tolerance
        for alpha, row in sweep.items():
            if row["recall@500"] < floor:
                continue
            key = (row["l2_match"], row["recall@500"], -t["w_r"])
            if best is None or key > best[0]:
                point = {"w_r": t["w_r"], "seed": t["seed"], "alpha": alpha, **row}
                point["engagement_head_recall@500"] = sweep[100.0]["recall@500"]
                best = (key, point)
    return best[1] if best else None


def write_sweep_report(
    records: list[dict[str, Any]], cfg: RunConfig, out_dir: Path
) -> dict[str, Any]:
    trials = trial_objects(records, cfg)
    means = mean_by_w_r(trials)
    pick = recommend(trials, cfg.sweep.recall_tolerance)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "wr_sweep.json").write_text(json.dumps(trials, indent=2) + "\n")
    lines = [
        f"# {cfg.data.dataset}: w_r sweep (MTMH at alpha {cfg.eval.alpha:g})",
        "",
        *synthetic_notice(cfg.data.dataset, config_to_dict(cfg)),
        f"{len(trials)} trials; seeds {sorted({t['seed'] for t in trials})}; each cell is the "
        "mean over seeds ± its standard error. Percent (lifts: match rate over the random-pair "
        "rate); in brackets the change of the mean relative to w_r = 0.5 (the paper's Table 4 "
        "layout).",
        "",
    ]
    rows = {f"w_r {w:g}": m for w, m in means.items()}
    base = f"w_r {REFERENCE_W_R:g}" if REFERENCE_W_R in means else None
    lines += seed_table(rows, base, "w_r")
    lines += ["", relevance_trend(means, "l2_match"), "", relevance_trend(means, "l1_match")]
    sweep_w_r = REFERENCE_W_R if REFERENCE_W_R in means else next(iter(means), None)
    if sweep_w_r is not None:
        by_alpha = mean_by_alpha(trials, sweep_w_r)
        lines += ["", f"## Alpha sweep at w_r {sweep_w_r:g} (mean ± s.e. over seeds)", ""]
        lines += seed_table({f"alpha {a:g}": m for a, m in by_alpha.items()}, None, "alpha")
    not_done = [t for t in trials if t["status"] != "evaluated"]
    if not_done:
        lines += [
            "",
            "Not evaluated: "
            + ", ".join(f"w_r {t['w_r']:g} seed {t['seed']} ({t['status']})" for t in not_done),
        ]
    lines += ["", "## Recommended point", ""]
    if pick:
        lines.append(
            f"w_r {pick['w_r']:g}, alpha {pick['alpha']:g} (seed {pick['seed']}): recall@500 "
            f"{100 * pick['recall@500']:.2f}% (engagement head "
            f"{100 * pick['engagement_head_recall@500']:.2f}%), L2 {100 * pick['l2_match']:.2f}%"
            f", L1 {100 * pick['l1_match']:.2f}%: the most relevant point that loses no "
            f"recall@500 against its engagement head (tolerance "
            f"{100 * cfg.sweep.recall_tolerance:g} points)."
        )
    else:
        lines.append("No evaluated trial.")
    lines += [
        "",
        "Plot: wr_sweep.png (every (w_r, alpha) point; the line is the Pareto front).",
        "",
    ]
    (out_dir / "wr_sweep.md").write_text("\n".join(lines))
    plot_sweep(trials, out_dir / "wr_sweep.png", cfg.data.dataset, pick)
    return {"trials": trials, "by_w_r": means, "recommended": pick}


def plot_sweep(
    trials: list[dict[str, Any]], path: Path, dataset: str, pick: dict[str, Any] | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, labels = [], []
    for t in trials:
        for row in t.get("alpha_sweep", []):
            if not (math.isnan(row["recall@500"]) or math.isnan(row["l2_match"])):
                points.append((100 * row["recall@500"], 100 * row["l2_match"]))
                labels.append((t["w_r"], row["alpha"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    w_values = sorted({w for w, _ in labels})
    cmap = plt.get_cmap("viridis", max(len(w_values), 2))
    for k, w in enumerate(w_values):
        xs = [p for p, (w2, _) in zip(points, labels, strict=True) if w2 == w]
        ax.scatter([x for x, _ in xs], [y for _, y in xs], color=cmap(k), label=f"w_r {w:g}")
    for (x, y), (_, a) in zip(points, labels, strict=True):
        ax.annotate(f"{a:g}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    front = pareto_front(points)
    ax.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    if pick:
        ax.scatter(
            [100 * pick["recall@500"]],
            [100 * pick["l2_match"]],
            s=160,
            facecolors="none",
            edgecolors="red",
            label="recommended",
        )
    ax.set(
        xlabel="recall@500 (%)",
        ylabel="L2 topic match (%)",
        title=f"{dataset}: w_r x alpha (labels: alpha)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
