"""Item popularity and age in the training log, as the preranker reads them.

Both are taken from the rows the models train on (T1 less the validation split's held-out
rows), so no held-out engagement counts towards its own item's popularity. `ItemLog` answers
"as of time t": the preranker's training examples are cut per user, and an example must not
see interactions from after its user's cut. Serving and the test period read one snapshot at
the end of the training log (`ItemStats`, saved with the prerankers).

Example:
    log = ItemLog.from_run(run_dir, split, num_items)
    stats = log.at(log.end)          # ItemStats over the whole training log
    stats.features(np.array([3, 7]))  # [2, 2]: log1p(count), log1p(age in days)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtmh.atomic_file import write_atomically
from mtmh.holdout import HoldoutSplit

DAY = 86_400  # seconds; ages are in days
STATS_FILE = "item_stats.npz"


@dataclass(frozen=True)
class ItemStats:
    """Per item id: engagements before the reference time, and days since the first one."""

    counts: np.ndarray  # [N] int64
    age_days: np.ndarray  # [N] float32 (0 for items never engaged with)

    def features(self, items: np.ndarray) -> np.ndarray:
        """[..., 2] float32: log1p(count), log1p(age) of `items` (any shape, ids >= 0)."""
        return np.stack(
            [np.log1p(self.counts[items]), np.log1p(self.age_days[items])], axis=-1
        ).astype(np.float32)

    def save(self, path: Path) -> None:
        """Written whole or not at all: concurrent readers (sweep trials) never see a part,
        and the pipeline's fits beside the trainings and after them may save at once."""
        write_atomically(path, lambda p: np.savez(p, counts=self.counts, age_days=self.age_days))

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        with np.load(path) as f:
            return cls(f["counts"], f["age_days"])


class ItemLog:
    """The training log's (item, timestamp) rows, sorted, for counts and first-seen times as
    of any moment: [M] keys, item id in the high 32 bits and the timestamp's rank in the low."""

    def __init__(self, items: np.ndarray, timestamps: np.ndarray, num_items: int) -> None:
        self.num_items = num_items
        self.times = np.unique(timestamps.astype(np.int64))  # distinct timestamps, sorted
        rank = np.searchsorted(self.times, timestamps)
        self.keys = np.sort((items.astype(np.int64) << 32) | rank)
        self.starts = np.searchsorted(self.keys, np.arange(num_items + 1, dtype=np.int64) << 32)
        self.end = int(self.times[-1]) + 1 if len(self.times) else 0

    @classmethod
    def from_run(cls, run_dir: Path, split: HoldoutSplit, num_items: int) -> ItemLog:
        t1 = pq.read_table(run_dir / "data" / "t1", columns=["user_id", "item_id", "timestamp"])
        ts = t1["timestamp"].to_numpy().astype(np.int64)
        keep = split.training_mask(t1["user_id"].to_numpy().astype(np.int64), ts)
        return cls(t1["item_id"].to_numpy()[keep], ts[keep], num_items)

    def at(self, when: int) -> ItemStats:
        """Every item's count and age from the rows before `when` (a timestamp)."""
        items = np.arange(self.num_items, dtype=np.int64)
        before = np.searchsorted(self.times, when)  # timestamps ranked below this are earlier
        first = self.starts[items]
        stop = np.searchsorted(self.keys, (items << 32) | before)
        counts = stop - first
        first_rank = self.keys[np.minimum(first, len(self.keys) - 1)] & 0xFFFFFFFF
        first_time = (
            self.times[np.minimum(first_rank, len(self.times) - 1)]
            if len(self.times)
            else np.zeros(len(items), np.int64)
        )
        age = np.where(counts > 0, (when - first_time) / DAY, 0.0).astype(np.float32)
        return ItemStats(counts.astype(np.int64), np.maximum(age, 0.0))
