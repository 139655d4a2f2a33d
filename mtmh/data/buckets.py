"""Per-bucket work of `prepare`: every user's whole history lives in exactly one bucket.

Two passes run over the buckets as Ray Data tasks:
- `count_bucket_users` (cheap, one column): distinct users, from which the driver derives each
  bucket's user-id offset (the time cut comes from the histograms of `BucketSink`);
- `finish_bucket`: exact-duplicate quarantine, contiguous user ids, the T1/T2 split, pairs, and
  per-item counts, each written as this bucket's part of the output tables.

A bucket holds about `rows_per_bucket` rows, so a task's memory is bounded however large the
log grows. Output files are named by bucket, so a retried task overwrites, never duplicates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtmh.data.pairs import build_pairs
from mtmh.data.schema import INTERACTIONS, QUARANTINE, USERS
from mtmh.data.validate import VALID_COLUMNS, VALIDATED


def bucket_dir(validated_dir: Path, bucket: int) -> Path:
    return validated_dir / f"bucket={bucket}"


def _read(validated_dir: Path, bucket: int, columns: list[str]) -> pa.Table:
    path = bucket_dir(validated_dir, bucket)
    if not path.exists():  # no user hashed here
        return pa.schema([VALIDATED.field(c) for c in columns]).empty_table()
    return pq.read_table(path, columns=columns)


def _sorted_users(user_raw: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(distinct raw ids in sorted order, local index of each row) for a bucket."""
    uniq = pc.unique(user_raw)
    distinct = uniq.take(pc.sort_indices(uniq))
    local = pc.index_in(user_raw, value_set=distinct).to_numpy(zero_copy_only=False)
    return distinct, local.astype(np.int64)


def count_bucket_users(row: dict[str, Any], validated_dir: str) -> dict[str, Any]:
    """Pass 1: the number of distinct users in one bucket (their ids' offset comes from it)."""
    table = _read(Path(validated_dir), int(row["bucket"]), ["user_raw"])
    return {"bucket": int(row["bucket"]), "users": len(pc.unique(table["user_raw"]))}


def _write(table: pa.Table, folder: Path, bucket: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Id columns are high-cardinality: dictionary encoding costs write time and saves little.
    pq.write_table(table, folder / f"part-{bucket:05d}.parquet", use_dictionary=False)


def _duplicates(uid: np.ndarray, item: np.ndarray, ts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mask of rows that exactly repeat an earlier row; rows must be sorted on all four."""
    dup = np.zeros(len(uid), dtype=bool)
    if len(uid) > 1:
        dup[1:] = (
            (uid[1:] == uid[:-1])
            & (item[1:] == item[:-1])
            & (ts[1:] == ts[:-1])
            & (w[1:] == w[:-1])
        )
    return dup


def _item_counts(item: np.ndarray, ts: np.ndarray, in_t1: np.ndarray) -> pa.Table:
    """Per-item interaction counts and first interaction time, for items this bucket touched."""
    by_item = np.argsort(item, kind="stable")
    uniq, start = np.unique(item[by_item], return_index=True)
    t1_counts = np.bincount(item[in_t1], minlength=int(uniq.max(initial=-1)) + 1)
    return pa.table(
        {
            "item_id": pa.array(uniq, pa.int32()),
            "interactions": np.diff(np.append(start, len(item))).astype(np.int64),
            "t1_interactions": t1_counts[uniq].astype(np.int64),
            "first_seen": np.minimum.reduceat(ts[by_item], start)
            if len(start)
            else np.empty(0, np.int64),
        }
    )


def _duplicate_rows(
    raw_users: list[Any], item: np.ndarray, ts: np.ndarray, weight: np.ndarray
) -> pa.Table:
    """QUARANTINE rows for exact duplicates, with the values each duplicate carried."""
    raw = [
        json.dumps({"user_id": u, "item_id": int(i), "timestamp": int(t), "weight": float(w)})
        for u, i, t, w in zip(raw_users, item, ts, weight, strict=True)
    ]
    n = len(raw)
    return pa.table(
        {
            "reason": ["duplicate"] * n,
            "detail": ["exact copy of an earlier row (same user, item, timestamp, weight)"] * n,
            "source": [None] * n,
            "raw": raw,
        },
        schema=QUARANTINE,
    )


def finish_bucket(
    row: dict[str, Any], validated_dir: str, out_dir: str, cut: int, window: int
) -> dict[str, Any]:
    """Pass 2 as a Ray Data `map` over bucket rows: read one bucket, then `finish_table`."""
    bucket = int(row["bucket"])
    table = _read(Path(validated_dir), bucket, VALID_COLUMNS)
    return finish_table(table, bucket, int(row["user_offset"]), Path(out_dir), cut, window)


def finish_table(
    table: pa.Table, bucket: int, offset: int, out: Path, cut: int, window: int
) -> dict[str, Any]:
    """Write the users, t1, t2, pairs, duplicates and item counts of whole user histories.

    Args:
        table: valid rows (VALID_COLUMNS) holding every row of the users it contains.
        bucket: names the output part files; offset: first user id of these users.
        cut: T1/T2 cut timestamp; window: pair window.
    Returns:
        counts for stats.json.
    """
    distinct, local = _sorted_users(table["user_raw"])
    uid = local + offset
    item = table["item_id"].to_numpy().astype(np.int32)
    ts = table["timestamp"].to_numpy().astype(np.int64)
    weight = table["weight"].to_numpy().astype(np.float32)
    # Sort by user, time, item (then weight, so exact duplicates sit next to each other).
    order = np.lexsort((weight, item, ts, uid))
    uid, item, ts, weight = uid[order], item[order], ts[order], weight[order]

    dup = _duplicates(uid, item, ts, weight)
    if dup.any():
        raw_users = distinct.take(pa.array(uid[dup] - offset)).to_pylist()
        quarantine = _duplicate_rows(raw_users, item[dup], ts[dup], weight[dup])
        _write(quarantine, out / "quarantine" / "duplicates", bucket)
        keep = ~dup
        uid, item, ts, weight = uid[keep], item[keep], ts[keep], weight[keep]

    in_t1 = ts < cut
    interactions = pa.Table.from_arrays(
        [pa.array(uid, pa.int32()), pa.array(item), pa.array(ts), pa.array(weight)],
        schema=INTERACTIONS,
    )
    _write(interactions.filter(pa.array(in_t1)), out / "t1", bucket)
    _write(interactions.filter(pa.array(~in_t1)), out / "t2", bucket)
    pairs = build_pairs(uid[in_t1], item[in_t1], ts[in_t1], window)
    _write(pairs, out / "pairs", bucket)

    n_users = len(distinct)
    users = _users_table(distinct, uid[in_t1] - offset, uid[~in_t1] - offset, offset)
    _write(users, out / "users", bucket)
    _write(_item_counts(item, ts, in_t1), out / "_work" / "item_stats", bucket)

    return {
        "bucket": bucket,
        "interactions": len(uid),
        "duplicates": int(dup.sum()),
        "users": n_users,
        "t1_interactions": int(in_t1.sum()),
        "t2_interactions": int((~in_t1).sum()),
        "pairs": pairs.num_rows,
        "eval_users": int(pc.sum(users["is_eval"]).as_py() or 0),
    }


def _users_table(
    distinct: pa.Array, t1_local: np.ndarray, t2_local: np.ndarray, offset: int
) -> pa.Table:
    """One row per user: its id (from `offset`), raw id, T1 and T2 counts, and whether it
    is evaluated (rows on both sides of the cut). `t1_local`, `t2_local`: each row's user
    index within the bucket."""
    n_users = len(distinct)
    t1_per_user = np.bincount(t1_local, minlength=n_users).astype(np.int32)
    t2_per_user = np.bincount(t2_local, minlength=n_users).astype(np.int32)
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(offset, offset + n_users), pa.int32()),
            distinct.cast(pa.string()),
            pa.array(t1_per_user),
            pa.array(t2_per_user),
            pa.array((t1_per_user > 0) & (t2_per_user > 0)),
        ],
        schema=USERS,
    )
