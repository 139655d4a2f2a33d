"""The whole run: prepare, encode, train every variant, indexes, preranker, evaluate.

mtmh run                                            # ml-100k into runs/ml-100k (= make run)
mtmh run --dataset ml-1m -v                         # runs/ml-1m, Ray's logs shown live
python ray_jobs/pipeline.py --dataset ml-100k --out runs/ml-100k
ray job submit -- python ray_jobs/pipeline.py --dataset ml-1m --out /shared/runs/ml-1m

A stage whose artifact exists with the same config is skipped (--force redoes all). The
config is the packaged default (or --config) with --set overrides. The terminal gets one line
per stage and, at the end, the report table; RUN/report.{md,json} have the whole report and
RUN/logs/pipeline.log everything else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mtmh.eval.summary import print_report
from mtmh.job_args import config_from_args, job_parser
from mtmh.job_output import JobOutput, run_job
from mtmh.pipeline import run_pipeline
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="ml-100k, ml-1m, synthetic or parquet:PATH")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, [f"data.dataset={args.dataset}"] if args.dataset else [])

    def body(out: JobOutput) -> int:
        out.console.print(
            f"mtmh: {cfg.data.dataset} into {args.out}/ (logs: {out.log_file})", soft_wrap=True
        )
        init_ray(cfg.ray)
        report = run_pipeline(cfg, args.out, force=args.force, console=out.console)
        print_report(out.console, report, args.out)
        return 0

    return run_job("pipeline", args.out, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
