"""What every job script shares: --config/--set handling and logging setup."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mtmh.config import ConfigError, RunConfig, load_config


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
    """Load the config or exit with the validation message (no traceback for a user error)."""
    try:
        return load_config(args.config, [*(extra or []), *args.overrides])
    except ConfigError as err:
        sys.exit(f"error: {err}")


def run_config_from_args(
    args: argparse.Namespace, run_dir: Path, extra: list[str] | None = None
) -> RunConfig:
    """The config of a job on an existing run: --config, else the run's own
    RUN/data/config.yaml, plus --set overrides. A bad config exits with status 2 and the
    validation message (no traceback for a user error)."""
    try:
        return load_config(
            args.config or (run_dir / "data" / "config.yaml"), [*(extra or []), *args.overrides]
        )
    except ConfigError as err:
        sys.stderr.write(f"error: {err}\n")  # the CLI contract: message on stderr, exit 2
        raise SystemExit(2) from None


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
