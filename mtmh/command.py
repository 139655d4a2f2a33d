"""The `mtmh` command: one entry point over the jobs in mtmh/jobs/ and the Serve app.

Each subcommand is a thin wrapper: `mtmh run ...` is `python ray_jobs/pipeline.py ...` with
defaults filled in, and `mtmh COMMAND --help` shows the job's own options. The make targets
and `ray job submit -- python ray_jobs/...` stay as they are.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console

COMMANDS = """\
commands:
  run        the whole pipeline: prepare, encode, train, index, preranker, evaluate
  serve      the Ray Serve app on localhost:8000 (explore page at /, API at /docs)
  sweep      the Ray Tune sweep of w_r (and alpha) on a run
  report     print a finished run's report table and where its files are
  prepare, encode, train, index, preranker, evaluate
             one stage of a run (the jobs in ray_jobs/)
  update     a new model version from a slice of new logs, gated, then served
  versions   a run's versions and which one is served (--promote N serves another)
  rollback   serve the version before the served one

examples:
  mtmh run                                      # ml-100k into runs/ml-100k (= make run)
  mtmh run --dataset ml-1m -v                   # into runs/ml-1m, Ray's logs shown live
  mtmh run --dataset parquet:/data/shop --out runs/shop --set eval.alpha=30
  mtmh report runs/ml-100k
  mtmh serve runs/ml-100k --mode fused          # Ctrl-C stops it
  mtmh sweep runs/ml-100k --set "sweep.w_r_values=[0.0, 0.5, 5.0]"
  mtmh train --run runs/ml-100k --variant mtmh
  mtmh update runs/days --logs data/days/slice-01
  mtmh rollback runs/days
"""

# command -> the job module whose main() it runs
JOBS = {
    "run": "mtmh.jobs.pipeline",
    "sweep": "mtmh.jobs.sweep_wr",
    "prepare": "mtmh.jobs.prepare_data",
    "encode": "mtmh.jobs.encode_content",
    "train": "mtmh.jobs.train",
    "index": "mtmh.jobs.build_indexes",
    "preranker": "mtmh.jobs.train_preranker",
    "evaluate": "mtmh.jobs.evaluate",
    "update": "mtmh.jobs.update",
    "versions": "mtmh.jobs.versions",
    "rollback": "mtmh.jobs.rollback",
}
DEFAULT_DATASET = "ml-100k"
# Serve's fast path (docs/benchmarks.md), as `make serve` sets it.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def _parser(
    prog: str, description: str, epilog: str | None = None, usage: str | None = None
) -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    return argparse.ArgumentParser(
        prog=prog, usage=usage, description=description, epilog=epilog, formatter_class=formatter
    )


# Help and errors only: main() picks the command from the first argument itself, because
# a job's options must reach the job's own parser untouched.
TOP = _parser(
    "mtmh",
    usage="%(prog)s COMMAND [OPTIONS]      (mtmh COMMAND --help for a command's options)",
    description=COMMANDS,
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        TOP.exit(2, TOP.format_help())
    name, rest = args[0], args[1:]
    if name in ("-h", "--help", "help"):
        TOP.print_help()
        return 0
    if name == "serve":
        return serve(rest)
    if name == "report":
        return report(rest)
    if name not in JOBS:
        TOP.exit(2, f"error: unknown command {name!r}\n\n{TOP.format_help()}")
    if name == "run":
        rest = run_defaults(rest)
    elif name == "sweep" and rest and not rest[0].startswith("-"):
        rest = ["--run", *rest]  # `mtmh sweep RUN`
    sys.argv[0] = f"mtmh {name}"  # what the job's --help and errors call it
    job = importlib.import_module(JOBS[name])
    return int(job.main(rest))


def run_defaults(rest: list[str]) -> list[str]:
    """`mtmh run` = ml-100k into runs/<dataset>, unless the options say otherwise."""
    given = {a.split("=")[0] for a in rest if a.startswith("--")}
    if "--dataset" not in given and "--config" not in given:
        rest = ["--dataset", DEFAULT_DATASET, *rest]
    if "--out" not in given and "--help" not in given and "-h" not in rest:
        dataset = rest[rest.index("--dataset") + 1] if "--dataset" in rest else DEFAULT_DATASET
        rest = [*rest, "--out", f"runs/{Path(dataset.removeprefix('parquet:')).name}"]
    return rest


def serve(rest: list[str]) -> int:
    parser = _parser(
        "mtmh serve",
        description="Serve a run with Ray Serve on localhost:8000: `serve run serve_app:graph` "
        "with Serve's fast path. The explore page is at /, the API at /docs.",
        epilog="examples:\n  mtmh serve\n  mtmh serve runs/ml-1m --mode fused",
    )
    parser.add_argument(
        "run",
        nargs="?",
        default=f"runs/{DEFAULT_DATASET}",
        type=Path,
        help="run directory (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        choices=("graph", "fused"),
        default="graph",
        help="graph: a deployment per head; fused: one for all",
    )
    args = parser.parse_args(rest)
    if not (args.run / "pipeline.yaml").is_file():
        parser.exit(
            2, f"error: {args.run} is not a finished run (no pipeline.yaml): mtmh run first\n"
        )
    serve_bin = str(Path(sys.executable).with_name("serve"))
    env = {**os.environ, **SERVE_ENV, "MTMH_RUN": str(args.run), "MTMH_SERVE_MODE": args.mode}
    os.execve(serve_bin, [serve_bin, "run", "serve_app:graph"], env)  # replaces this process


def report(rest: list[str]) -> int:
    from mtmh.eval.summary import print_report
    from mtmh.versions import serving_dir

    parser = _parser(
        "mtmh report",
        description="Print the report table of the version RUN serves (RUN/serving.json; the "
        "run itself when it was never updated) and where its files are.",
        epilog="example:\n  mtmh report runs/ml-100k",
    )
    parser.add_argument("run", type=Path, help="run directory")
    run_dir = serving_dir(parser.parse_args(rest).run)
    path = run_dir / "report.json"
    if not path.is_file():
        parser.exit(
            2, f"error: no report in {run_dir}: `mtmh run` (or ray_jobs/evaluate.py) writes it\n"
        )
    print_report(Console(), json.loads(path.read_text()), run_dir)
    return 0
