"""Fit the preranker of every model of a run (after its indexes), one Ray task per model.

python ray_jobs/train_preranker.py --run runs/ml-100k
ray job submit -- python ray_jobs/train_preranker.py --run /shared/runs/ml-1m

Writes RUN/preranker/: item_stats.npz, summary.json, and <model>/model.pt and meta.json.
"""

from __future__ import annotations

import json
import sys

from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.preranker.train import fit_prerankers
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory (after prepare)")
    args, cfg = parse_on_run(parser, argv)

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        out.console.print_json(json.dumps(fit_prerankers(cfg, args.run), default=str))
        return 0

    return run_job("train_preranker", args.run, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
