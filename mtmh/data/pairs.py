"""Positive training pairs from user histories (spec section 2).

For a user history i_1..i_T in time order, every item i_t is paired, as the target, with each of
the previous `window` items as triggers. The paper pairs the T-th item with all T-1 earlier
ones; applying it at every position with a window gives every engagement its recent context
without the quadratic blow-up of long histories.

Content-based pair weights (SIM-style: pairs of items close in content space weigh more) need
the content encoder's embeddings, which do not exist at prepare time; the trainer attaches them
(mtmh/model), so the pairs carry what that needs: the gap and the target's time.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from mtmh.data.schema import PAIRS


def build_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray, window: int
) -> pa.Table:
    """Pairs from histories already sorted by (user, timestamp, item).

    Args:
        user_ids, item_ids, timestamps: [M] arrays, one row per interaction, sorted.
        window: how many previous items each target is paired with.
    Returns:
        PAIRS table; a pair of an item with itself (a re-engagement) is not a positive.
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PAIRS.names}
    for gap in range(1, min(window, max(len(user_ids) - 1, 0)) + 1):
        same_user = user_ids[gap:] == user_ids[:-gap]
        trigger = item_ids[:-gap][same_user]
        target = item_ids[gap:][same_user]
        keep = trigger != target
        parts["user_id"].append(user_ids[gap:][same_user][keep])
        parts["trigger_id"].append(trigger[keep])
        parts["target_id"].append(target[keep])
        parts["gap"].append(np.full(int(keep.sum()), gap, dtype=np.int16))
        parts["target_timestamp"].append(timestamps[gap:][same_user][keep])
    arrays = [
        pa.array(np.concatenate(parts[f.name]) if parts[f.name] else np.empty(0), f.type)
        for f in PAIRS
    ]
    return pa.Table.from_arrays(arrays, schema=PAIRS)


def naive_pairs(
    histories: dict[int, list[tuple[int, int]]], window: int
) -> Counter[tuple[int, ...]]:
    """Reference: a plain loop over each user's (timestamp, item) history, as a multiset of
    (user, trigger, target, gap). For tests."""
    out: Counter[tuple[int, ...]] = Counter()
    for user, events in histories.items():
        items = [item for _, item in sorted(events)]
        for t, target in enumerate(items):
            for gap in range(1, window + 1):
                if t - gap >= 0 and items[t - gap] != target:
                    out[(user, items[t - gap], target, gap)] += 1
    return out
