"""Validation of raw interaction logs: per-row checks, quarantine rows, and schema checks.

Two kinds of bad input, treated differently on purpose:
- a *file* that lacks a required column or has one of an unusable type stops the job with a
  `SchemaError` naming the file and column (nothing sensible can be read from it);
- a bad *row* never stops the job: it is routed to the quarantine table with its reason, the
  offending field and its original values, and counted in stats.json. Nothing is dropped
  silently: rows read == valid rows + quarantined rows, checked at the end of prepare.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mtmh.data.schema import LOG_OPTIONAL_COLUMNS, LOG_REQUIRED_COLUMNS, QUARANTINE_REASONS
from mtmh.data.sources.base import LogFiles
from mtmh.data.sources.parquet import SchemaError

# A number as text: optional sign, digits, optional fraction, optional exponent.
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
OK = 0
_CODE = {reason: i + 1 for i, reason in enumerate(QUARANTINE_REASONS)}

# The columns one validated batch carries: valid rows fill the first five (bucket >= 0),
# quarantined rows the last four (bucket == -1). One stream keeps Ray Data's write path simple.
# `user_raw` is int64 where the log's user ids are integers, else string.
VALIDATED = pa.schema(
    [
        ("user_raw", pa.string()),
        ("item_id", pa.int32()),
        ("timestamp", pa.int64()),
        ("weight", pa.float32()),
        ("bucket", pa.int32()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("source", pa.string()),
        ("raw", pa.string()),
    ]
)


# The columns a valid row keeps once its bucket is known (the first four of VALIDATED).
VALID_COLUMNS = VALIDATED.names[:4]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


_ALLOWED = {
    "user_id": lambda t: pa.types.is_integer(t) or _is_text(t),
    "item_id": lambda t: pa.types.is_integer(t) or _is_text(t),
    "timestamp": lambda t: (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t) or _is_text(t)
    ),
    "weight": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or _is_text(t),
}


def read_parquet_schema(path: Path) -> pa.Schema:
    """A parquet file's schema; a file that is not readable parquet (truncated, not parquet at
    all) is a `SchemaError` naming it, before any job touches its rows."""
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise SchemaError(f"{path}: not a readable parquet file ({err})") from err


def _source_columns(path: Path, logs: LogFiles) -> dict[str, pa.DataType]:
    """The file's own column names and types (text files: every column is text)."""
    if logs.format == "parquet":
        return {f.name: f.type for f in read_parquet_schema(path)}
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    sep = "\t" if logs.format == "tsv" else ","
    return {name.strip(): pa.string() for name in first.split(sep)}


def _read_header(path: Path, logs: LogFiles) -> dict[str, pa.DataType]:
    """The file's columns under our schema's names."""
    return {logs.schema_name(name): t for name, t in _source_columns(path, logs).items()}


def check_log_schema(logs: LogFiles) -> None:
    """Raise `SchemaError` naming the file and column if any log file cannot be read as logs."""
    if not logs.paths:
        raise SchemaError("no interaction log files to read")
    for path in logs.paths:
        columns = _read_header(path, logs)
        for name in LOG_REQUIRED_COLUMNS:
            if name not in columns:
                raise SchemaError(
                    f"{path}: missing required column {name!r} (found {sorted(columns)})"
                )
        for name in (*LOG_REQUIRED_COLUMNS, *LOG_OPTIONAL_COLUMNS):
            if name in columns and not _ALLOWED[name](columns[name]):
                raise SchemaError(
                    f"{path}: column {name!r} has type {columns[name]}, which "
                    "cannot hold that field"
                )


class MalformedRowWriter:
    """pyarrow CSV `invalid_row_handler`: keeps each malformed line in a quarantine file.

    pyarrow can only skip or abort on a line with the wrong number of fields; we skip it after
    appending it (with its line number) to a per-process JSONL file that `prepare` folds into
    the quarantine table, so the line is set aside, not lost.
    """

    def __init__(self, out_dir: str, source: str) -> None:
        self.out_dir = out_dir
        self.source = source

    def __call__(self, row: Any) -> str:
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"malformed-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl")
        record = {
            "reason": "malformed_row",
            "detail": f"line {row.number}: {row.actual_columns} fields, "
            f"expected {row.expected_columns}",
            "source": self.source,
            "raw": row.text,
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        return "skip"


def csv_read_options(logs: LogFiles, malformed_dir: str, path: Path) -> dict[str, Any]:
    """pyarrow CSV options for `ray.data.read_csv`: every column as text, bad lines kept."""
    sep = "\t" if logs.format == "tsv" else ","
    return {
        "parse_options": pcsv.ParseOptions(
            delimiter=sep,
            quote_char=False if sep == "\t" else '"',
            invalid_row_handler=MalformedRowWriter(malformed_dir, str(path)),
        ),
        # Text everywhere: a bad value must reach the validator, not fail the whole read.
        "convert_options": pcsv.ConvertOptions(
            column_types={name: pa.string() for name in _source_columns(path, logs)},
            strings_can_be_null=False,
        ),
    }


def stable_bucket(values: pa.Array, num_buckets: int) -> np.ndarray:
    """Bucket of each id, identical in every process (Python's `hash` is salted per process).

    Strings are hashed once per distinct value in the batch; integers directly.
    """
    if pa.types.is_integer(values.type):
        hashed = pd.util.hash_array(values.to_numpy(zero_copy_only=False).astype(np.int64))
    else:
        encoded = values.dictionary_encode()
        uniques = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False))
        hashed = uniques[encoded.indices.to_numpy(zero_copy_only=False)]
    return (hashed % np.uint64(num_buckets)).astype(np.int32)


def _as_text(col: pa.Array) -> pa.Array:
    return col if _is_text(col.type) else col.cast(pa.string())


def _missing(text: pa.Array) -> np.ndarray:
    empty = pc.equal(pc.utf8_trim_whitespace(text), "")
    return np.asarray(pc.or_kleene(pc.is_null(text), empty).fill_null(True), dtype=bool)


def parse_number(col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (float values, null mask, unparseable mask) for a text or numeric column."""
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("s")).cast(pa.int64())
    if _is_text(col.type):
        null = _missing(col)
        ok = np.asarray(pc.match_substring_regex(col, _NUMBER).fill_null(False), dtype=bool)
        cleaned = pc.if_else(pa.array(ok), col, pa.scalar("0"))
        values = pc.cast(pc.utf8_trim_whitespace(cleaned), pa.float64()).to_numpy(
            zero_copy_only=False
        )
        bad = ~ok & ~null
    else:
        null = np.asarray(pc.is_null(col), dtype=bool)
        values = pc.cast(col, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        bad = np.zeros(len(col), dtype=bool)
    bad |= ~np.isfinite(values) & ~null
    return np.where(np.isfinite(values), values, 0.0), null, bad


class LogValidator:
    """Ray Data `map_batches` callable: raw log batch -> VALIDATED batch.

    Args:
        item_raw_ids: catalog raw ids in item_id order (item_id = position).
        item_available_from: [N] int64 arrival times, or -inf-like sentinel where unknown.
        min_timestamp/max_timestamp: rows outside are `impossible_timestamp`.
        num_buckets: users are hashed into this many buckets.
        column_map: source column -> schema column.
    """

    def __init__(
        self,
        item_raw_ids: pa.Array,
        item_available_from: np.ndarray,
        min_timestamp: int,
        max_timestamp: int,
        num_buckets: int,
        column_map: dict[str, str],
    ) -> None:
        self.item_raw_ids = item_raw_ids
        self.item_available_from = item_available_from
        self.min_timestamp = min_timestamp
        self.max_timestamp = max_timestamp
        self.num_buckets = num_buckets
        self.column_map = column_map

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = batch.rename_columns([self.column_map.get(c, c) for c in batch.column_names])
        n = batch.num_rows
        code = np.zeros(n, dtype=np.int8)
        detail = np.full(n, None, dtype=object)

        def flag(mask: np.ndarray, reason: str, why: str) -> None:
            hit = mask & (code == OK)
            code[hit] = _CODE[reason]
            detail[hit] = why

        col = {name: batch[name].combine_chunks() for name in batch.column_names}
        # Integer user ids stay integers: hashing, sorting and finding distinct values are much
        # cheaper than on their text form.
        user = col["user_id"]
        if pa.types.is_integer(user.type):
            user = user.cast(pa.int64())
            flag(np.asarray(pc.is_null(user), dtype=bool), "missing_field", "user_id is empty")
        else:
            user = _as_text(user)
            flag(_missing(user), "missing_field", "user_id is empty")
        item = _as_text(col["item_id"])
        flag(_missing(item), "missing_field", "item_id is empty")
        ts, ts_null, ts_bad = parse_number(col["timestamp"])
        flag(ts_null, "missing_field", "timestamp is empty")
        flag(ts_bad, "unparseable_field", "timestamp is not a finite number")
        if "weight" in col:
            weight, w_null, w_bad = parse_number(col["weight"])
            weight[w_null] = 1.0  # weight is optional: absent means 1.0
            flag(w_bad, "unparseable_field", "weight is not a finite number")
        else:
            weight = np.ones(n)
        item_idx = pc.index_in(item, value_set=self.item_raw_ids).to_numpy(zero_copy_only=False)
        unknown = np.isnan(item_idx) if item_idx.dtype.kind == "f" else np.zeros(n, bool)
        flag(unknown, "unknown_item", "item_id is not in the item table")
        item_ids = np.where(unknown, 0, np.nan_to_num(item_idx)).astype(np.int64)
        ts_int = np.floor(ts).astype(np.int64)
        flag(
            (ts_int < self.min_timestamp) | (ts_int > self.max_timestamp),
            "impossible_timestamp",
            f"timestamp outside [{self.min_timestamp}, {self.max_timestamp}]",
        )
        flag(
            ts_int < self.item_available_from[item_ids],
            "impossible_timestamp",
            "timestamp before the item's available_from",
        )
        return self._assemble(batch, code, detail, user, item_ids, ts_int, weight)

    def _assemble(
        self,
        batch: pa.Table,
        code: np.ndarray,
        detail: np.ndarray,
        user: pa.Array,
        item_ids: np.ndarray,
        ts: np.ndarray,
        weight: np.ndarray,
    ) -> pa.Table:
        good = code == OK
        good_arr = pa.array(good)
        bucket = np.full(len(code), -1, dtype=np.int32)
        if good.any():
            bucket[good] = stable_bucket(user.filter(good_arr), self.num_buckets)
        reason_names = np.array([None, *QUARANTINE_REASONS], dtype=object)
        raw = np.full(len(code), None, dtype=object)
        source = np.full(len(code), None, dtype=object)
        if not good.all():
            bad_idx = np.flatnonzero(~good)
            original = (
                batch.take(pa.array(bad_idx))
                .drop_columns([c for c in ("path",) if c in batch.column_names])
                .to_pylist()
            )
            raw[bad_idx] = [json.dumps(r, default=str) for r in original]
            if "path" in batch.column_names:
                source[bad_idx] = batch["path"].take(pa.array(bad_idx)).to_pylist()
        null = ~good  # valid-row columns are null on quarantined rows
        return pa.Table.from_arrays(
            [
                pc.if_else(good_arr, user, pa.scalar(None, user.type)),
                pa.array(item_ids, pa.int32(), mask=null),
                pa.array(ts, pa.int64(), mask=null),
                pa.array(weight, pa.float32(), mask=null),
                pa.array(bucket, pa.int32()),
                pa.array(reason_names[code], pa.string()),
                pa.array(detail, pa.string()),
                pa.array(source, pa.string()),
                pa.array(raw, pa.string()),
            ],
            schema=VALIDATED.set(0, pa.field("user_raw", user.type)),
        )
