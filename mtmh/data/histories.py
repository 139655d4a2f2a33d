"""Per-user interaction histories read back from a prepared run (T1 and T2), for the preranker
and the evaluation. Reads only the users asked for (a pyarrow filter), never the whole log.

Example:
    hist = load_histories(run_dir / "data" / "t1", users=[3, 17])
    hist[3].items, hist[3].weights  # time-ordered arrays
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

PAD = -1  # history padding value (no item)


@dataclass(frozen=True)
class History:
    items: np.ndarray  # [T] int64 item ids, oldest first
    weights: np.ndarray  # [T] float32 (rating or 1.0)
    timestamps: np.ndarray  # [T] int64


def load_histories(folder: Path, users: Iterable[int] | None = None) -> dict[int, History]:
    """{user_id: History} for `users` (all users when None), sorted by (timestamp, item)."""
    filters = None
    if users is not None:
        wanted = sorted({int(u) for u in users})
        if not wanted:
            return {}
        filters = [("user_id", "in", wanted)]
    table = pq.read_table(
        folder, columns=["user_id", "item_id", "timestamp", "weight"], filters=filters
    ).sort_by([("user_id", "ascending"), ("timestamp", "ascending"), ("item_id", "ascending")])
    user = table["user_id"].to_numpy()
    item = table["item_id"].to_numpy().astype(np.int64)
    ts = table["timestamp"].to_numpy()
    weight = table["weight"].to_numpy().astype(np.float32)
    out: dict[int, History] = {}
    bounds = np.flatnonzero(np.diff(user)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(user)], strict=True):
        if hi > lo:
            out[int(user[lo])] = History(item[lo:hi], weight[lo:hi], ts[lo:hi])
    return out


def recent_window(items: np.ndarray, length: int) -> np.ndarray:
    """The last `length` items, oldest first, left-padded with PAD to exactly `length`."""
    tail = items[-length:] if length else items[:0]
    out = np.full(length, PAD, dtype=np.int64)
    if len(tail):
        out[length - len(tail) :] = tail
    return out
