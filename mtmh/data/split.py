"""Time split of the log into T1 (train) and T2 (test), and the evaluation users.

The split is global in time (one cut for everyone), as in the paper: T1 is the past the model
learns from, T2 the future it is graded on, so no T2 event can leak into training.
"""

from __future__ import annotations

import numpy as np

from mtmh.config import SplitConfig

HOUR = 3600


def hour_histogram(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hours, counts) of `timestamps` (epoch seconds), the mergeable summary of one bucket."""
    hours, counts = np.unique(timestamps // HOUR, return_counts=True)
    return hours.astype(np.int64), counts.astype(np.int64)


def merge_histograms(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    hours = np.concatenate([h for h, _ in parts]) if parts else np.empty(0, np.int64)
    counts = np.concatenate([c for _, c in parts]) if parts else np.empty(0, np.int64)
    uniq, inverse = np.unique(hours, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


def time_cut(cfg: SplitConfig, hours: np.ndarray, counts: np.ndarray) -> int:
    """The cut timestamp: T1 = [.., cut), T2 = [cut, ..).

    In quantile mode the cut is the end of the first hour by which `t1_fraction` of all
    interactions happened (an exact quantile would need a global sort; hourly resolution is
    mergeable across buckets and precise enough for a log split).
    """
    if cfg.mode == "timestamp":
        assert cfg.cut_timestamp is not None  # enforced by SplitConfig
        return int(cfg.cut_timestamp)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("cannot split an empty log: no valid interactions")
    order = np.argsort(hours)
    cumulative = np.cumsum(counts[order])
    at = int(np.searchsorted(cumulative, cfg.t1_fraction * total, side="left"))
    return int(hours[order][min(at, len(order) - 1)] + 1) * HOUR
