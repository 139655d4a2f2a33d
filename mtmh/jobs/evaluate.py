"""Evaluate every trained model of a run with the paper's protocol and write the report.

python ray_jobs/evaluate.py --run runs/ml-100k
python ray_jobs/evaluate.py --run runs/ml-100k --set eval.max_users=500

Needs the trained variants (train.py), their indexes (build_indexes.py) and the preranker
(train_preranker.py); models without embeddings are left out with a warning. Writes
RUN/report.json, RUN/report.md, recall_relevance.png, alpha_curve.png, fresh_convergence.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from mtmh.cli import add_config_args, run_config_from_args, setup_logging
from mtmh.eval.evaluate import evaluate_run
from mtmh.index.artifact import IndexMismatchError
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    cfg = run_config_from_args(args, args.run)
    init_ray(cfg.ray)
    try:
        evaluate_run(cfg, args.run)
    except (FileNotFoundError, IndexMismatchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Console().print(Markdown((args.run / "report.md").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
