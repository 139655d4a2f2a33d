"""Train one model variant (MTMH, an ablation or a baseline) on a prepared and encoded run.

python ray_jobs/train.py --run runs/ml-100k --variant mtmh
ray job submit -- python ray_jobs/train.py --run /shared/runs/ml-1m --variant mtmh \
    --set train.num_workers=4 --set train.use_gpu=true

Reads RUN/data/pairs (prepare_data.py) and RUN/content (encode_content.py; variants that
distill or read content need it). Writes RUN/models/<variant>/: model.pt, config.yaml,
metrics.jsonl, loss_curves.png and embeddings/<head>.parquet. The run's own config
(RUN/data/config.yaml) is the base; --config replaces it and --set overrides either.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mtmh.cli import add_config_args, setup_logging
from mtmh.config import ConfigError, load_config
from mtmh.model.curves import plot_loss_curves, read_metrics
from mtmh.model.train_loop import fit, model_dir
from mtmh.model.variants import VARIANTS
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="default: model.variant")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    extra = [f"model.variant={args.variant}"] if args.variant else []
    try:
        cfg = load_config(
            args.config or (args.run / "data" / "config.yaml"), [*extra, *args.overrides]
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    init_ray(cfg.ray)
    started = time.perf_counter()
    try:
        result = fit(cfg, args.run)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.error is not None:
        print(f"error: training failed: {result.error}", file=sys.stderr)
        return 1
    out = model_dir(args.run, cfg.model.variant)
    rows = read_metrics(out / "metrics.jsonl")
    plot_loss_curves(out / "metrics.jsonl", out / "loss_curves.png", f"{cfg.model.variant}")
    summary = {
        "variant": cfg.model.variant,
        "steps": int(result.metrics["step"]),
        "seconds": round(time.perf_counter() - started, 1),
        "first": {k: round(v, 4) for k, v in rows[0].items() if "/" in k} if rows else {},
        "last": {k: round(v, 4) for k, v in rows[-1].items() if "/" in k} if rows else {},
        "pairs_per_s_last": round(rows[-1]["pairs_per_s"], 1) if rows else None,
        "outputs": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
