"""Validation curves of one variant under several training settings, side by side.

Each setting trains the same variant on the same prepared run (its own model name under
RUN/models/) for a fixed number of epochs with no early stopping, measuring validation
recall (mtmh/holdout.py, the end of T1) after every epoch. The table shows, per setting,
the steady pairs/s, the validation score after each epoch and the best epoch: how the
defaults in `train.*` were chosen (docs/results.md).

    .venv/bin/python bench/train_curves.py --run runs/ml-100k --variant mtmh --epochs 4
    .venv/bin/python bench/train_curves.py --run runs/ml-1m --settings temperature --epochs 1
    .venv/bin/python bench/train_curves.py --run runs/ml-1m --vary train.lr --values 1e-3 3e-4

`--vary KEY --values ...` compares any config key (the first value is usually the run's
own). The pair window is not one of them: it shapes RUN/data/pairs at prepare time, so a
window is compared by preparing a run with it and running this bench on each run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtmh.config import build_config, config_to_dict, load_config

OPTIMIZER: dict[str, list[str]] = {
    "paper: adagrad 0.01, batch 2048": [
        "train.optimizer=adagrad",
        "train.lr=0.01",
        "train.batch_size=2048",
    ],
    "adagrad 0.01, batch 1024": [
        "train.optimizer=adagrad",
        "train.lr=0.01",
        "train.batch_size=1024",
    ],
    "adam 1e-3, batch 1024": ["train.optimizer=adam", "train.lr=0.001", "train.batch_size=1024"],
    "adam 1e-3, batch 512": ["train.optimizer=adam", "train.lr=0.001", "train.batch_size=512"],
}
# The softmax temperature of the co-engagement loss (the default 0.05 was never varied): a
# lower one weighs the hardest in-batch negatives more, a higher one spreads the gradient.
TEMPERATURES = (0.025, 0.05, 0.1, 0.2)


def temperature_settings(values: tuple[float, ...]) -> dict[str, list[str]]:
    return {f"temperature {t:g}": [f"model.temperature={t}"] for t in values}


SETTINGS = {"optimizer": OPTIMIZER, "temperature": temperature_settings(TEMPERATURES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="a prepared and encoded run")
    parser.add_argument("--variant", default="mtmh")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="optimizer")
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=None,
        help=f"with --settings temperature (default {TEMPERATURES})",
    )
    parser.add_argument("--vary", metavar="KEY", help="a config key to compare, e.g. model.dim")
    parser.add_argument("--values", nargs="+", default=None, help="with --vary: its values")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from mtmh.model.curves import read_metrics
    from mtmh.model.training import train_variant
    from mtmh.ray_utils import init_ray

    base = load_config(args.run / "pipeline.yaml")
    init_ray(base.ray)
    results = {}
    settings = SETTINGS[args.settings]
    if args.temperatures:
        settings = temperature_settings(tuple(args.temperatures))
    if args.vary:
        if not args.values:
            parser.error("--vary needs --values")
        settings = {f"{args.vary}={v}": [f"{args.vary}={v}"] for v in args.values}
    for i, (label, overrides) in enumerate(settings.items()):
        cfg = build_config(
            config_to_dict(base),
            [
                *overrides,
                f"model.variant={args.variant}",
                f"model.name=curve-{i}",
                f"train.epochs={args.epochs}",
                f"train.patience={args.epochs}",
                "train.cpus_per_worker=1",
                "train.report_every=50",
            ],
        )
        summary = train_variant(cfg, args.run)
        rows = read_metrics(args.run / "models" / f"curve-{i}" / "metrics.jsonl")
        rates = sorted(r["pairs_per_s"] for r in rows if "pairs_per_s" in r)
        results[label] = {
            "val_score": summary["validation_score"],
            "best_epoch": summary["best_epoch"],
            "median_pairs_per_s": rates[len(rates) // 2] if rates else None,
            "seconds": summary["seconds"],
        }
        print(label, results[label], flush=True)
    print(
        f"\n{args.run.name}, {args.variant}: validation score (mean recall@100/@500 over heads, "
        "%) after each epoch"
    )
    print(
        "| setting | pairs/s | "
        + " | ".join(f"epoch {e + 1}" for e in range(args.epochs))
        + " | best |"
    )
    print("|---|---|" + "---|" * args.epochs + "---|")
    for label, r in results.items():
        cells = " | ".join(f"{100 * v:.2f}" for v in r["val_score"])
        print(f"| {label} | {r['median_pairs_per_s']:.0f} | {cells} | {r['best_epoch'] + 1} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
