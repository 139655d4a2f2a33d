"""Ray Tune sweep of w_r (each trial trains MTMH, builds its indexes and evaluates it at every
alpha), over seeds 0, 1, 2 by default, written as RUN/tune/wr_sweep.{json,md,png} with mean ±
standard error per cell.

mtmh sweep runs/ml-100k                                     # after prepare and encode
python tune/sweep_wr.py --run runs/ml-100k                  # the same
python tune/sweep_wr.py --run runs/ml-100k --resume         # continue an interrupted sweep
python tune/sweep_wr.py --run runs/ml-100k --set sweep.scheduler=asha --dashboard
python tune/sweep_wr.py --run runs/synthetic --set "sweep.w_r_values=[0.0, 0.5, 5.0]"
ray job submit -- python tune/sweep_wr.py --run /shared/runs/ml-1m --set train.use_gpu=true

Watch it in the Ray dashboard (--dashboard on a local Ray; a cluster always has one) and in
TensorBoard: `tensorboard --logdir RUN/tune/wr_sweep`.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from rich.markdown import Markdown

from mtmh.content.encode import EMBEDDINGS_FILE
from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job
from mtmh.ray_utils import init_ray
from mtmh.sweep.report import write_sweep_report
from mtmh.sweep.tuner import run_sweep, sweep_dir


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory (prepared, encoded)")
    parser.add_argument("--resume", action="store_true", help="restore an interrupted sweep")
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard")
    args, cfg = parse_on_run(parser, argv)
    if args.dashboard:
        cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, dashboard=True))

    def body(out: JobOutput) -> int:
        # A missing input is a FileNotFoundError: run_job makes it the usual one line, exit 2.
        for needed in (args.run / "data" / "pairs", args.run / "content" / EMBEDDINGS_FILE):
            if not needed.exists():
                raise FileNotFoundError(
                    f"{needed} not found: run prepare_data.py and encode_content.py first"
                )
        init_ray(cfg.ray)
        out.console.print(
            f"sweeping w_r on {args.run} (trial logs: {out.log_file})", soft_wrap=True
        )
        records = run_sweep(cfg, args.run, resume=args.resume)
        summary = write_sweep_report(records, cfg, sweep_dir(args.run))
        out.console.print(Markdown((sweep_dir(args.run) / "wr_sweep.md").read_text()))
        out.console.print_json(json.dumps({"recommended": summary["recommended"]}, default=str))
        failed = [r for r in records if r["status"] == "error"]
        return 1 if failed else 0

    return run_job("sweep", args.run, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
