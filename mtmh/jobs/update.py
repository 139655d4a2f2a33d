"""A new model version of a run from a slice of new logs (and catalog rows), gated and, when it
passes, served (mtmh/update/make_version.py; versions in mtmh/versions.py).

mtmh update runs/days --logs data/days/slice-01                  # a slice_dataset folder
mtmh update runs/days --logs new/interactions.csv --items new/items.parquet
python ray_jobs/update.py runs/days --logs data/days/slice-02 --set update.tolerance=0.02
ray job submit -- python ray_jobs/update.py /shared/runs/shop --logs /shared/logs/2026-11-30

The run must come from a `parquet:` dataset (cut one with ray_jobs/slice_dataset.py). The new
version is written to RUN/versions/<n>/; RUN/serving.json names the version Serve answers
from. --no-promote writes and gates the version without serving it (`mtmh versions RUN
--promote N` serves it later; `mtmh rollback RUN` goes back).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mtmh.job_args import job_parser, run_config_from_args
from mtmh.job_output import JobOutput, run_job
from mtmh.jobs.versions import print_versions
from mtmh.ray_utils import init_ray
from mtmh.update.make_version import check_updatable, make_version


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("run", type=Path, help="the run directory (mtmh run's --out)")
    parser.add_argument("--logs", required=True, type=Path, help="the new slice: a folder or file")
    parser.add_argument("--items", type=Path, help="the new catalog rows (items.parquet)")
    parser.add_argument("--no-promote", action="store_true", help="gate it, do not serve it")
    args = parser.parse_args(argv)
    # The run's own pipeline config with --set: a bad key or value stops here, in full.
    cfg = run_config_from_args(args, args.run.resolve(), file="pipeline.yaml")

    def body(out: JobOutput) -> int:
        check_updatable(cfg, args.run)  # before Ray starts
        init_ray(cfg.ray)
        promote = not args.no_promote
        record = make_version(
            args.run, args.logs, args.items, args.config, args.overrides, promote, out.console
        )
        print_versions(out.console, args.run)
        verdict = "promoted: Serve follows it" if record["promoted"] else "not promoted"
        out.console.print(f"version {record['version']}: {verdict}", soft_wrap=True)
        return 0

    return run_job("update", args.run, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
