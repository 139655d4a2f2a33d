"""Prepare a dataset into RUN/data: validated logs, T1/T2 split, users, items and pairs.

python ray_jobs/prepare_data.py --dataset ml-100k --out runs/ml-100k
ray job submit -- python ray_jobs/prepare_data.py --dataset ml-1m --out /shared/runs/ml-1m
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtmh.cli import add_config_args, config_from_args, setup_logging
from mtmh.data.fetch import FetchError
from mtmh.data.prepare import prepare
from mtmh.data.sources import SchemaError


def summary_table(stats: dict[str, Any]) -> Table:
    table = Table(title=f"{stats['dataset']}: prepared in {stats['seconds']} s", show_header=False)
    for key in (
        "interactions",
        "users",
        "items",
        "catalog_items",
        "t1_interactions",
        "t2_interactions",
        "eval_users",
        "pairs",
        "items_with_l2_label",
        "rows_read",
    ):
        table.add_row(key, f"{stats[key]:,}")
    table.add_row("quarantined", ", ".join(f"{k}={v:,}" for k, v in stats["quarantined"].items()))
    table.add_row("T1/T2 cut (epoch s)", str(stats["cut_timestamp"]))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", help="ml-100k, ml-1m, synthetic or parquet:PATH")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    cfg = config_from_args(args, [f"data.dataset={args.dataset}"] if args.dataset else [])
    try:
        stats = prepare(cfg, args.out)
    except (SchemaError, FetchError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Console().print(summary_table(stats))
    print(json.dumps({k: stats[k] for k in ("interactions", "users", "items", "pairs")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
