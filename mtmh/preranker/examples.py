"""Preranker training examples from T1, built by Ray Data: one row per engagement that has at
least one earlier engagement of the same user.

    history    [H] int64  the user's previous H items, oldest first, left-padded with -1
                          (a fixed-size list column)
    target_id  int64      the item engaged with next (the engagement task's positive)
    satisfied  float32    1.0 when its weight >= preranker.satisfaction_threshold

`Dataset.groupby("user_id").map_groups` puts each user's whole T1 history in one call, so
histories never cross workers and the driver never holds the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mtmh.config import PrerankerConfig
from mtmh.data.histories import PAD
from mtmh.validation import HoldoutSplit


def user_examples(batch: dict[str, np.ndarray], history_length: int, threshold: float) -> pa.Table:
    """All examples of one user's T1 rows (any order in; sorted by time here)."""
    order = np.lexsort((batch["item_id"], batch["timestamp"]))
    items = batch["item_id"][order].astype(np.int64)
    weights = batch["weight"][order].astype(np.float32)
    n = len(items)
    padded = np.concatenate([np.full(history_length, PAD, np.int64), items])
    # Row t (t = 1..n-1) holds items[t-H : t]: a sliding window over the padded history.
    windows = np.lib.stride_tricks.sliding_window_view(padded, history_length)[1:n]
    # A fixed-size list column (not a tensor column): it stays Arrow even when a user with a
    # single engagement yields zero rows, and iter_torch_batches turns it into [B, H].
    return pa.table(
        {
            "history": pa.FixedSizeListArray.from_arrays(
                pa.array(windows.ravel(), pa.int64()), history_length
            ),
            "target_id": pa.array(items[1:], pa.int64()),
            "satisfied": pa.array((weights[1:] >= threshold).astype(np.float32)),
        }
    )


def example_dataset(run_dir: Path, cfg: PrerankerConfig, split: HoldoutSplit) -> Any:
    """The Ray Dataset of training examples over RUN/data/t1, less the validation split's
    held-out rows (the preranker is judged on them against ANN order)."""
    import ray

    t1 = run_dir / "data" / "t1"
    if not t1.is_dir():
        raise FileNotFoundError(f"{t1} not found: run ray_jobs/prepare_data.py first")
    ds = ray.data.read_parquet(str(t1)).select_columns(
        ["user_id", "item_id", "timestamp", "weight"]
    )
    if split:

        def drop_held_out(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            keep = split.training_mask(batch["user_id"], batch["timestamp"])
            return {c: v[keep] for c, v in batch.items()}

        ds = ds.map_batches(drop_held_out, batch_format="numpy")
    # T1 is written in user-hash buckets; one shuffle partition per bucket file is plenty.
    partitions = max(1, len(list(t1.glob("*.parquet"))))
    return ds.groupby("user_id", num_partitions=partitions).map_groups(
        user_examples,  # type: ignore[arg-type]  # fn_kwargs supplies the extra parameters
        batch_format="numpy",
        fn_kwargs={
            "history_length": cfg.history_length,
            "threshold": cfg.satisfaction_threshold,
        },
    )
