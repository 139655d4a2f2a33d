"""What every job script shares: --config/--set and -v handling, and the run directory check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtmh.config import ConfigError, RunConfig, load_config


def job_parser(doc: str | None, run: str | None = None) -> argparse.ArgumentParser:
    """A job's parser: its docstring as the help, --config/--set and -v; with `run`, also a
    required --run (that text its help). The job adds its own options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if run is not None:
        parser.add_argument("--run", required=True, type=Path, help=run)
    add_config_args(parser)
    add_output_args(parser)
    return parser


def parse_on_run(
    parser: argparse.ArgumentParser, argv: list[str] | None, extra: list[str] | None = None
) -> tuple[argparse.Namespace, RunConfig]:
    """The arguments of a job on an existing run (--run), and its config."""
    args = parser.parse_args(argv)
    return args, run_config_from_args(args, existing_run(args.run), extra)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="YAML config (default: the packaged mtmh/configs/default.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. data.pairs.window=20",
    )


def config_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> RunConfig:
    """The config of --config (default: the packaged one) with `extra` and --set overrides."""
    return _load_or_exit(args.config, [*(extra or []), *args.overrides])


def run_config_from_args(
    args: argparse.Namespace,
    run_dir: Path,
    extra: list[str] | None = None,
    file: str = "data/config.yaml",
) -> RunConfig:
    """The config of a job on an existing run: --config, else the run's own `file`
    (RUN/data/config.yaml, what prepare ran with), plus `extra` and --set overrides."""
    return _load_or_exit(args.config or run_dir / file, [*(extra or []), *args.overrides])


def _load_or_exit(path: str | Path | None, overrides: list[str]) -> RunConfig:
    """The one config-error path of every job: a bad config exits with status 2 and the
    validation message on stderr (no traceback for a user error)."""
    try:
        return load_config(path, overrides)
    except ConfigError as err:
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(2) from None


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Ray's and the workers' logs live (they always go to RUN/logs/JOB.log)",
    )


def existing_run(run_dir: Path, made_by: str = "prepare_data.py") -> Path:
    """`run_dir`, or exit with status 2 and one line when it does not exist."""
    if not run_dir.is_dir():
        sys.stderr.write(f"error: no run directory {run_dir}: run {made_by} first\n")
        raise SystemExit(2)
    return run_dir
