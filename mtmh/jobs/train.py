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
from pathlib import Path

from mtmh.cli import add_config_args, run_config_from_args, setup_logging
from mtmh.model.job import TrainingFailed, train_variant
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
    cfg = run_config_from_args(args, args.run, extra)
    init_ray(cfg.ray)
    try:
        summary = train_variant(cfg, args.run)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
