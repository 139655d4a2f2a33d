"""Cut a dataset by time into a base and the slices that follow it (the days an update loop
trains on; mtmh/data/slices.py). No Ray: one process reads the logs and writes the folders.

python ray_jobs/slice_dataset.py --dataset synthetic --slices 3 --out data/synthetic-days
python ray_jobs/slice_dataset.py --dataset ml-1m --slices 4 --period-days 7 --end-fraction 0.8 \
    --out data/ml-1m-weeks

Then `mtmh run --dataset parquet:data/synthetic-days/base --out runs/days` trains the base;
each OUT/slice-NN holds the items that arrive and the interactions that land in its period.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.table import Table

from mtmh.data.fetch import default_data_dir
from mtmh.data.slices import slice_dataset
from mtmh.data.sources import get_source
from mtmh.job_args import config_from_args, job_parser
from mtmh.job_output import JobOutput, run_job

DAY = 86_400


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="ml-100k, ml-1m, synthetic or parquet:PATH")
    parser.add_argument("--slices", type=int, default=3, help="how many periods at the end")
    parser.add_argument("--period-days", type=float, default=1.0, help="length of each slice")
    parser.add_argument(
        "--end-fraction",
        type=float,
        default=1.0,
        help="the slices end where this share of the rows lies before (1: the newest row); "
        "what follows goes to OUT/after",
    )
    parser.add_argument(
        "--end-timestamp",
        type=int,
        help="the slices end at this Unix time instead (the base ends --slices periods before)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, [f"data.dataset={args.dataset}"] if args.dataset else [])

    def body(out: JobOutput) -> int:
        source = get_source(cfg.data).load(
            Path(cfg.data.data_dir) if cfg.data.data_dir else default_data_dir()
        )
        rb = cfg.data.row_bounds  # the validator's bounds: an impossible row moves no slice
        bounds = (rb.min_timestamp, rb.max_timestamp or int(time.time()) + rb.max_future_seconds)
        period = round(args.period_days * DAY)
        meta = slice_dataset(
            source, args.out, args.slices, period, bounds, args.end_fraction, args.end_timestamp
        )
        table = Table(title=f"{meta['source']} -> {args.out}")
        for column in ("folder", "interactions", "items"):
            table.add_column(column)
        for name, rows in meta["rows"].items():
            table.add_row(name, f"{rows:,}", f"{meta['items'][name]:,}")
        out.console.print(table)
        out.console.print(
            f"malformed lines set aside: {meta['malformed_lines']}; rows without a plausible "
            f"timestamp (left in the base for prepare to quarantine): "
            f"{meta['rows_without_timestamp']}"
        )
        return 0

    return run_job("slice_dataset", args.out, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
