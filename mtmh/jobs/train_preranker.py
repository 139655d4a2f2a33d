"""Train the multi-task preranker (engagement + satisfaction) on T1 with Ray Train.

python ray_jobs/train_preranker.py --run runs/ml-100k
ray job submit -- python ray_jobs/train_preranker.py --run /shared/runs/ml-1m \
    --set preranker.num_workers=2 --set preranker.use_gpu=true

Writes RUN/preranker/: model.pt, config.yaml, metrics.jsonl (one row per epoch), summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtmh.cli import add_config_args, run_config_from_args, setup_logging
from mtmh.preranker.train import fit_preranker
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="run directory (after prepare)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    cfg = run_config_from_args(args, args.run)
    init_ray(cfg.ray)
    try:
        summary = fit_preranker(cfg, args.run)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
