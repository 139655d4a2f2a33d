"""The whole run: prepare, encode, train every variant, indexes, preranker, evaluate.

python ray_jobs/pipeline.py --dataset ml-100k --out runs/ml-100k        # = make run
python ray_jobs/pipeline.py --dataset ml-1m --out runs/ml-1m
ray job submit -- python ray_jobs/pipeline.py --dataset ml-1m --out /shared/runs/ml-1m

A stage whose artifact exists with the same config is skipped (--force redoes all). The
config is the packaged default (or --config) with --set overrides; the report is printed at
the end and written to RUN/report.{md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from mtmh.cli import add_config_args, config_from_args, setup_logging
from mtmh.data.fetch import FetchError
from mtmh.data.sources import SchemaError
from mtmh.index.artifact import IndexMismatchError
from mtmh.model.job import TrainingFailed
from mtmh.pipeline import run_pipeline
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", help="ml-100k, ml-1m, synthetic or parquet:PATH")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    cfg = config_from_args(args, [f"data.dataset={args.dataset}"] if args.dataset else [])
    init_ray(cfg.ray)
    console = Console()
    try:
        run_pipeline(cfg, args.out, force=args.force, console=console)
    except (SchemaError, FetchError, FileNotFoundError, IndexMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    console.print(Markdown((args.out / "report.md").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
