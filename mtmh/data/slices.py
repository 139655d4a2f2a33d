"""A dataset cut by time into a base and the slices that follow it: the days (or weeks) an
update loop trains on (issue 28), from any source (synthetic, MovieLens, parquet:PATH).

The last `slices` periods of `period_seconds` before `end` (default: the log's newest valid
timestamp) are the slices; everything before them is the base, and whatever comes after
`end` goes to OUT/after, so nothing is lost. Each folder is a `parquet:PATH` dataset of its
own (mtmh/data/sources/parquet.py), so `mtmh run --dataset parquet:OUT/base` trains the base
and each slice holds what lands that period:

    OUT/base/       items.parquet, interactions/part-0.parquet
    OUT/slice-01/   the items that arrive in the first period, its interactions
    ...
    OUT/after/      rows and items after the last slice (only when there are any)
    OUT/malformed/  log lines pyarrow could not split into fields (set aside, with line numbers)
    OUT/slices.json the bounds, and rows and items per folder

An item arrives at its `available_from` when the source gives one, else at its first
interaction, and is listed in exactly one folder: the base, or the slice it arrives in (so
a slice's new items are the ones no earlier folder knew). An item nobody interacts with and
with no arrival time belongs to the base. Rows are copied as read: a row whose timestamp is
not a number, or outside the row bounds (`data.row_bounds`), stays in the base, where
prepare's validator quarantines it with its reason; it never moves the slices' end.

Example:
    meta = slice_dataset(get_source(cfg.data).load(cache), Path("data/synthetic-days"),
                         slices=3, period_seconds=86_400)
    meta["rows"]   # {"base": 112004, "slice-01": 2630, ...}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mtmh.data.sources.base import LogFiles, SourceData
from mtmh.data.validate import csv_read_options, parse_number

BASE, AFTER = "base", "after"


def slice_name(i: int) -> str:
    return f"slice-{i:02d}"


def read_log(logs: LogFiles, malformed_dir: Path) -> pa.Table:
    """Every row of every log file, columns renamed to the schema's names (text logs as
    text); malformed text lines go to `malformed_dir`."""
    tables = []
    for path in logs.paths:
        if logs.format == "parquet":
            table = pq.read_table(path)
        else:
            table = pcsv.read_csv(path, **csv_read_options(logs, str(malformed_dir), path))
        tables.append(table.rename_columns([logs.schema_name(c) for c in table.column_names]))
    return pa.concat_tables(tables, promote_options="permissive")


def period_of(timestamps: np.ndarray, end: int, slices: int, period_seconds: int) -> np.ndarray:
    """[R] -> 0 for the base, i for slice i (1..slices), slices + 1 after `end`: slice i is
    the i-th of the last `slices` periods ending at `end`, each (start, start + period]."""
    first = end - slices * period_seconds  # the base ends here, inclusive
    periods = np.clip(np.ceil((timestamps - first) / period_seconds), 0, slices)
    return np.where(timestamps > end, slices + 1, periods).astype(np.int64)


def item_layout(items: pa.Table, features: Any) -> pa.Table:
    """RAW_ITEMS rows back in the `parquet:PATH` item layout (item_id, text, ..., dense_<name>,
    cat_<name>) that `read_item_table` reads."""
    cols: dict[str, Any] = {
        "item_id": items["raw_id"],
        "text": items["text"],
        "image_uri": items["image_uri"],
        "concepts": items["concepts"],
        "topic_l1": items["topic_l1"],
        "topic_l2": items["topic_l2"],
        "available_from": items["available_from"],
    }
    dense = items["dense"].to_pylist()
    for j, name in enumerate(features.dense_names):
        cols[f"dense_{name}"] = pa.array([row[j] for row in dense], pa.float32())
    cats = items["categorical"].to_pylist()
    for j, name in enumerate(features.categorical_names):
        cols[f"cat_{name}"] = pa.array([row[j] for row in cats], pa.int32())
    return pa.table(cols)


def slice_dataset(
    source: SourceData,
    out: Path,
    slices: int,
    period_seconds: int,
    bounds: tuple[int, int] = (0, 2**62),
    end_fraction: float = 1.0,
    end: int | None = None,
) -> dict[str, Any]:
    """Write the base and `slices` slices of `source` under `out` (replacing an earlier cut's
    folders); returns what slices.json holds. `bounds`: the plausible timestamps, inclusive
    (prepare's row bounds); rows outside them stay in the base. `end_fraction`: the slices
    end where that share of the plausible rows lies at or before (1: the newest row); `end`,
    a Unix time, puts the end there instead (the base then ends `slices` periods before it)."""
    if slices < 1 or period_seconds < 1:
        raise ValueError(
            f"need slices >= 1 and period_seconds >= 1, got {slices}, {period_seconds}"
        )
    if not 0.0 < end_fraction <= 1.0:
        raise ValueError(f"end_fraction must be in (0, 1], got {end_fraction}")
    for old in [out / BASE, out / AFTER, out / "malformed", *out.glob("slice-*")]:
        shutil.rmtree(old, ignore_errors=True)
    log = read_log(source.logs, out / "malformed")
    for name in ("user_id", "item_id", "timestamp"):
        if name not in log.column_names:
            raise ValueError(f"{source.description}: the log has no {name!r} column")
    ts, null, bad = parse_number(log["timestamp"].combine_chunks())
    valid = ~null & ~bad & (ts >= bounds[0]) & (ts <= bounds[1])
    if not valid.any():
        raise ValueError(f"{source.description}: no row has a plausible timestamp")
    if end is None:
        end = int(np.quantile(ts[valid], end_fraction, method="inverted_cdf"))
    row_period = np.where(valid, period_of(ts, end, slices, period_seconds), 0)

    raw_ids = log["item_id"].combine_chunks().cast(pa.string())
    arrival = _arrivals(source.items, raw_ids, ts, valid)
    item_period = np.where(
        np.isnan(arrival), 0, period_of(np.nan_to_num(arrival), end, slices, period_seconds)
    )
    names = [BASE] + [slice_name(i) for i in range(1, slices + 1)]
    if (row_period > slices).any() or (item_period > slices).any():
        names.append(AFTER)  # rows past `end`, or an item that arrives after every row
    rows, items = {}, {}
    for p, name in enumerate(names):
        part = log.filter(pa.array(row_period == p))
        own = source.items.filter(pa.array(item_period == p))
        write_folder(out / name, part, item_layout(own, source.features))
        rows[name], items[name] = part.num_rows, own.num_rows
    meta = {
        "source": source.description,
        "period_seconds": period_seconds,
        "end": end,
        "bounds": [end - (slices - p) * period_seconds for p in range(slices + 1)],
        "rows": rows,
        "items": items,
        "malformed_lines": _count_lines(out / "malformed"),
        "rows_without_timestamp": int((~valid).sum()),  # or outside the bounds
    }
    (out / "slices.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def write_folder(folder: Path, interactions: pa.Table, items: pa.Table) -> None:
    """One `parquet:PATH` dataset: items.parquet and interactions/part-0.parquet."""
    (folder / "interactions").mkdir(parents=True)
    pq.write_table(interactions, folder / "interactions" / "part-0.parquet")
    pq.write_table(items, folder / "items.parquet")


def _count_lines(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.jsonl"):
        with path.open(encoding="utf-8") as fh:
            total += sum(1 for _ in fh)
    return total


def _arrivals(items: pa.Table, raw_ids: pa.Array, ts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[items] when each catalog item arrives: its available_from, else its first valid
    interaction, else NaN (never seen: the base)."""
    position = pc.index_in(raw_ids, value_set=items["raw_id"].combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    known = valid & ~np.isnan(position.astype(np.float64))
    first = np.full(items.num_rows, np.inf)
    np.minimum.at(first, position[known].astype(np.int64), ts[known])
    given = items["available_from"].to_numpy(zero_copy_only=False).astype(np.float64)
    return np.where(~np.isnan(given), given, np.where(np.isinf(first), np.nan, first))
