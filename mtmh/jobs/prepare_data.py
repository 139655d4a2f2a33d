"""Prepare a dataset into RUN/data: validated logs, T1/T2 split, users, items and pairs.

python ray_jobs/prepare_data.py --dataset ml-100k --out runs/ml-100k
ray job submit -- python ray_jobs/prepare_data.py --dataset ml-1m --out /shared/runs/ml-1m
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from mtmh.data.prepare import prepare
from mtmh.job_args import config_from_args, job_parser
from mtmh.job_output import JobOutput, run_job
from mtmh.ray_utils import init_ray


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
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="ml-100k, ml-1m, synthetic or parquet:PATH")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, [f"data.dataset={args.dataset}"] if args.dataset else [])

    def body(out: JobOutput) -> int:
        init_ray(cfg.ray)
        stats = prepare(cfg, args.out)
        out.console.print(summary_table(stats))
        out.console.print_json(
            json.dumps({k: stats[k] for k in ("interactions", "users", "items", "pairs")})
        )
        return 0

    return run_job("prepare", args.out, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
