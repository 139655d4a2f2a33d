"""The user-item matrix the classic peers fit: T1 less the validation split's held-out rows,
so they see exactly the interactions the learned models train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from mtmh.holdout import HoldoutSplit


def training_matrix(run_dir: Path, num_items: int, split: HoldoutSplit) -> sp.csr_matrix:
    """[U, N] binary CSR matrix: 1 where a user engaged with an item in the training rows."""
    t1 = pq.read_table(run_dir / "data" / "t1", columns=["user_id", "item_id", "timestamp"])
    users = t1["user_id"].to_numpy().astype(np.int64)
    items = t1["item_id"].to_numpy().astype(np.int64)
    keep = split.training_mask(users, t1["timestamp"].to_numpy().astype(np.int64))
    users, items = users[keep], items[keep]
    _, rows = np.unique(users, return_inverse=True)
    x = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, items)),
        shape=(int(rows.max()) + 1 if len(rows) else 0, num_items),
    )
    x.data[:] = 1.0  # repeated engagements count once
    return x
