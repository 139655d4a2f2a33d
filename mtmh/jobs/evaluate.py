"""Evaluate every trained model of a run with the paper's protocol and write the report.

python ray_jobs/evaluate.py --run runs/ml-100k
python ray_jobs/evaluate.py --run runs/ml-100k --set eval.max_users=500

Needs the trained variants (train.py), their indexes (build_indexes.py) and the preranker
(train_preranker.py); models without embeddings are left out with a warning. Writes
RUN/report.json, RUN/report.md, recall_relevance.png, alpha_curve.png, fresh_convergence.png.
"""

from __future__ import annotations

import sys

from mtmh.eval.evaluate import evaluate_run
from mtmh.eval.summary import print_report
from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.ray_utils import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory")
    args, cfg = parse_on_run(parser, argv)

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        report = evaluate_run(cfg, args.run)
        print_report(out.console, report, args.run)
        return 0

    return run_job("evaluate", args.run, args.verbose, body, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
