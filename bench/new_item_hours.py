"""How many hours of logs each model needs before it retrieves new items (issue 28).

A catalog drop (the synthetic generator's `burst_item_fraction` of the items, arriving
within one day from `burst_at`) lands on a run trained up to the drop. For each cut h hours
after the drop began, an update (`ray_jobs/update.py --no-promote`, warm-started from the
run's version 0 like any update) trains on every log up to the cut, and is graded on the
`--window-hours` that follow it: a timestamp split (`split.mode=timestamp`) at the cut, so
T1 is what the model was given and T2 is the next days, as a daily update is used. The
cold-start rows of each version's report (mtmh/eval/cold_start.py) then say, per model, the
recall of the new items users engaged with after the cut, and the topic match of what it
returns for triggers that are new items (there are some from the first hours on).

A model's "hours to retrievable" is the first cut from which its new-item recall@K stays
above zero by more than two standard errors (`hours_to_retrievable`). The co-engagement
peers cannot place an item before it has logs, and the table shows their zeros.

    .venv/bin/python bench/new_item_hours.py --out /tmp/exp/hours
    .venv/bin/python bench/new_item_hours.py --out /tmp/exp/hours --hours 0 24 --window-hours 24

Writes OUT/new_item_hours.{json,md,png}; OUT/data holds the cuts, OUT/run the base run and
its versions (a rerun reuses what is there: the base run, and the version of each cut).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mtmh.config import build_config
from mtmh.data.fetch import default_data_dir
from mtmh.data.slices import slice_dataset
from mtmh.data.sources import get_source
from mtmh.eval.cold_start import hours_to_retrievable
from mtmh.versions import made_versions, read_version, version_dir

HOUR, DAY = 3600, 86_400
ROOT = Path(__file__).resolve().parents[1]


def cut_data(out: Path, overrides: list[str], hours: list[int], window: int) -> int:
    """OUT/data/hNN: the base (every log up to the drop) and one slice from the drop to
    the cut plus the window. Returns the Unix time the drop begins."""
    cfg = build_config(overrides=overrides)
    syn = cfg.data.synthetic
    if not syn.burst_item_fraction:
        raise SystemExit("needs a burst fraction above 0: no items would arrive")
    drop = syn.start_timestamp + round(syn.burst_at * syn.span_days * DAY)
    source = None
    for h in hours:
        folder = out / "data" / f"h{h:02d}"
        if (folder / "slices.json").is_file():
            continue
        source = source or get_source(cfg.data).load(default_data_dir())
        span = (h + window) * HOUR
        meta = slice_dataset(source, folder, 1, span, end=drop + span)
        print(f"cut h={h}: {meta['rows']} rows, {meta['items']} items", flush=True)
    return drop


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    print("$", " ".join(argv), flush=True)
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)
    return round(time.perf_counter() - started, 1)


def versions_by_logs(run_dir: Path) -> dict[str, int]:
    """The run's updates by the slice each was made from (version 0, the base, has none)."""
    records = [read_version(run_dir, n) for n in made_versions(run_dir)[1:]]
    return {r["logs"]: int(r["version"]) for r in records}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out.resolve()
    overrides = [
        "data.dataset=synthetic",
        f"data.synthetic.burst_item_fraction={args.burst_fraction}",
        f"data.synthetic.burst_at={args.burst_at}",
    ]
    drop = cut_data(out, overrides, args.hours, args.window_hours)
    run_dir = out / "run"
    seconds: dict[str, float] = {}
    if not (run_dir / "report.json").is_file():
        variants = "[" + ",".join(args.variants) + "]"
        base = f"parquet:{out / 'data' / 'h00' / 'base'}"
        pipeline = ["ray_jobs/pipeline.py", "--dataset", base, "--out", str(run_dir)]
        seconds["base"] = run([*pipeline, "--set", f"pipeline.variants={variants}"])
    cuts: dict[int, dict[str, Any]] = {}
    for h in args.hours:
        logs = str((out / "data" / f"h{h:02d}" / "slice-01").resolve())
        if logs not in versions_by_logs(run_dir):
            split = ["data.split.mode=timestamp", f"data.split.cut_timestamp={drop + h * HOUR}"]
            seconds[f"h{h}"] = run(
                ["ray_jobs/update.py", str(run_dir), "--logs", logs, "--no-promote"]
                + [arg for o in split for arg in ("--set", o)]
            )
        number = versions_by_logs(run_dir)[logs]
        report = json.loads((version_dir(run_dir, number) / "report.json").read_text())
        cuts[h] = {
            "version": number,
            "served": report["ranking"]["chosen"],
            "orders": report["models_by_ranking"],
        }
    return {"drop": drop, "window_hours": args.window_hours, "seconds": seconds, "cuts": cuts}


def summarize(result: dict[str, Any], k: int) -> dict[str, dict[str, Any]]:
    """Per order (ann, preranker) and model: its new-item recall@k at every cut and the
    hours it needed."""
    cuts = result["cuts"]
    first = next(iter(cuts.values()))
    names = [n for n, row in first["orders"]["ann"].items() if "cold_users" in row]
    table: dict[str, dict[str, Any]] = {}
    for order in first["orders"]:
        rows = {}
        for name in names:
            curve = {}
            for h, cut in cuts.items():
                row = cut["orders"][order][name]
                curve[h] = (row[f"cold_recall@{k}"], row[f"cold_recall@{k}_se"])
            rows[name] = {"curve": curve, "hours_to_retrievable": hours_to_retrievable(curve)}
        table[order] = rows
    return table


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f}"


def _lift(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}x"


def recall_lines(rows: dict[str, Any], hours: list[int]) -> list[str]:
    lines = [
        "| model | " + " | ".join(f"h={h}" for h in hours) + " | hours to retrievable |",
        "|---" * (len(hours) + 2) + "|",
    ]
    for name, row in rows.items():
        cells = [f"{pct(r)} ± {pct(se)}" for r, se in row["curve"].values()]
        first = row["hours_to_retrievable"]
        when = f"not by {hours[-1]}" if first is None else str(first)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {when} |")
    return lines


def trigger_lines(result: dict[str, Any], names: list[str]) -> list[str]:
    """Per cut: the users graded, the new items among triggers and the L2 topic match of
    what each model (in the served order) returns for them."""
    lines = [
        "| cut | version | users with new-item truth | new triggers | "
        + " | ".join(f"{n} L2 match (lift)" for n in names)
        + " |",
        "|---" * (4 + len(names)) + "|",
    ]
    for h, cut in result["cuts"].items():
        models = cut["orders"][cut["served"]]
        cells = [
            f"{pct(models[n].get('cold_l2_match', math.nan))} "
            f"({_lift(models[n].get('cold_l2_lift', math.nan))})"
            for n in names
        ]
        any_row = models[names[0]]
        lines.append(
            f"| h={h} | {cut['version']} | {int(any_row['cold_users'])} | "
            f"{int(any_row.get('cold_triggers', 0))} | " + " | ".join(cells) + " |"
        )
    return lines


def write_markdown(
    result: dict[str, Any], table: dict[str, dict[str, Any]], k: int, path: Path
) -> None:
    hours = list(result["cuts"])
    lines = [
        f"New-item recall@{k} (percent ± SE) of a model trained up to h hours after the drop "
        f"began, graded on the {result['window_hours']} hours after the cut; hours to "
        "retrievable: the first cut from which it stays above two standard errors.",
    ]
    for order, rows in table.items():
        served = [h for h, cut in result["cuts"].items() if cut["served"] == order]
        note = "every cut" if served == hours else ", ".join(f"h={h}" for h in served) or "none"
        title = f"{order} order (served, as chosen on validation, at: {note})"
        lines += ["", title, "", *recall_lines(rows, hours)]
    lines += ["", "New items as triggers (served order):", ""]
    lines += trigger_lines(result, list(next(iter(table.values()))))
    path.write_text("\n".join(lines) + "\n")


def plot(table: dict[str, dict[str, Any]], k: int, path: Path) -> None:
    fig, axes = plt.subplots(1, len(table), figsize=(6 * len(table), 4.5), sharey=True)
    for ax, (order, rows) in zip(axes, table.items(), strict=True):
        for name, row in rows.items():
            hours = list(row["curve"])
            recall = [100 * r for r, _ in row["curve"].values()]
            bars = [200 * s for _, s in row["curve"].values()]
            ax.errorbar(hours, recall, yerr=bars, label=name, marker="o", capsize=3)
        ax.set_title(f"{order} order")
        ax.set_xlabel("hours of logs after the drop began")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"new-item recall@{k} (%), ±2 SE")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hours", type=int, nargs="+", default=[0, 6, 12, 24, 48])
    parser.add_argument("--window-hours", type=int, default=48)
    parser.add_argument("--burst-fraction", type=float, default=0.1)
    parser.add_argument("--burst-at", type=float, default=0.85)
    parser.add_argument("--variants", nargs="+", default=["mtmh", "itemcf"])
    parser.add_argument("--k", type=int, default=500, help="the recall cut-off reported")
    args = parser.parse_args()
    result = measure(args)
    table = summarize(result, args.k)
    out: Path = args.out
    summary = {"drop": result["drop"], "window_hours": result["window_hours"], "k": args.k}
    summary |= {
        "seconds": result["seconds"],
        "versions": {h: c["version"] for h, c in result["cuts"].items()},
    }
    (out / "new_item_hours.json").write_text(
        json.dumps({**summary, "orders": table}, indent=2) + "\n"
    )
    write_markdown(result, table, args.k, out / "new_item_hours.md")
    plot(table, args.k, out / "new_item_hours.png")
    print((out / "new_item_hours.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
