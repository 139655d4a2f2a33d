"""New items (cold start): how each model serves items that had no interactions before the
training cut.

An item with no T1 interactions is "new" to every model trained on T1: a co-engagement model
(ItemCF, ItemKNN, EASE) has nothing to place it by, while MTMH's relevance head and the
content encoder reach it through its content. Per model row, on the pooled top
`eval.top_k` of each user:
- `cold_recall@K` (± standard error): recall of the new items the user engaged with in T2,
  over the users who engaged with at least one (`cold_users`); a model that cannot rank a
  new item shows its zero here rather than being left out;
- `cold_share`: the share of all served slots that went to new items.

Example:
    meter = ColdStartMeter(new_items, ks=(100, 500))
    meter.add([12, 7, 301], truth={7, 999})   # one user's pooled list, best first
    meter.result()  # {"cold_users": 1.0, "cold_recall@100": ..., "cold_share": ...}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtmh.eval.metrics import RecallMean


def new_items(t1_interactions: np.ndarray) -> np.ndarray:
    """[N] bool: the items nobody interacted with in T1."""
    return np.asarray(t1_interactions) == 0


class ColdStartMeter:
    def __init__(self, new: np.ndarray, ks: Sequence[int]) -> None:
        self.new = new
        self.recall = RecallMean(tuple(ks))
        self.slots = 0
        self.new_slots = 0

    def add(self, pooled: Sequence[int], truth: frozenset[int] | set[int]) -> None:
        ids = np.asarray(pooled, np.int64)
        self.slots += len(ids)
        self.new_slots += int(self.new[ids].sum())
        wanted = {i for i in truth if self.new[i]}
        if wanted:
            self.recall.add(pooled, wanted)

    def result(self) -> dict[str, float]:
        return {
            "cold_users": float(self.recall.users),
            **{f"cold_recall@{k}": v for k, v in self.recall.means().items()},
            **{f"cold_recall@{k}_se": v for k, v in self.recall.standard_errors().items()},
            "cold_share": self.new_slots / self.slots if self.slots else float("nan"),
        }
