"""New items (cold start): how each model serves items that had no interactions before the
training cut, or that arrived after the last full training.

An item with no T1 interactions is "new" to every model trained on T1: a co-engagement model
(ItemCF, ItemKNN, EASE) has nothing to place it by, while MTMH's relevance head and the
content encoder reach it through its content. In an update's report the items that arrived
since the last full training are new too (`eval.new_items_from`): some of them have a few
engagements in T1 by now, so they are also triggers. Per model row:
- `cold_recall@K` (± standard error), on the pooled top `eval.top_k` of each user: recall of
  the new items the user engaged with in T2, over the users who engaged with at least one
  (`cold_users`); a model that cannot rank a new item shows its zero here rather than being
  left out;
- `cold_share`: the share of all served slots that went to new items;
- `cold_<level>_match` and `_lift` (level l1, l2): topic match of the merged lists of the
  triggers that are new items (`cold_triggers` of them), against a random candidate's: what
  a model returns for an item it has (almost) never seen engaged.

Example:
    meter = ColdStartMeter(new_items, ks=(100, 500), levels=catalog.levels)
    meter.add_trigger(301, [12, 7])           # a new trigger's merged list
    meter.add([12, 7, 301], truth={7, 999})   # one user's pooled list, best first
    meter.result()  # {"cold_users": 1.0, "cold_recall@100": ..., "cold_l2_match": ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mtmh.eval.metrics import MatchCounter, RecallMean
from mtmh.eval.topic_match import TopicLevel, lift


def new_items(t1_interactions: np.ndarray, arrived_from: int | None = None) -> np.ndarray:
    """[N] bool: the items nobody interacted with in T1, and those with id `arrived_from` or
    above (the items that arrived after the last full training)."""
    new = np.asarray(t1_interactions) == 0
    if arrived_from is not None:
        new[arrived_from:] = True
    return new


class ColdStartMeter:
    def __init__(
        self, new: np.ndarray, ks: Sequence[int], levels: Mapping[str, TopicLevel] | None = None
    ) -> None:
        self.new = new
        self.recall = RecallMean(tuple(ks))
        self.slots = 0
        self.new_slots = 0
        self.triggers = 0
        self.match = {
            lv: MatchCounter(t.labels, t.random_probability) for lv, t in (levels or {}).items()
        }

    def add_trigger(self, trigger: int, candidates: Sequence[int]) -> None:
        """One trigger's merged list; counted when the trigger is a new item."""
        if not self.new[trigger]:
            return
        self.triggers += 1
        for counter in self.match.values():
            counter.add(trigger, candidates)

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
            "cold_triggers": float(self.triggers),
            **{
                f"cold_{lvl}_{name}": value
                for lvl, counter in self.match.items()
                for name, value in (
                    ("match", counter.rate),
                    ("lift", lift(counter.rate, counter.random_rate)),
                )
            },
        }


def hours_to_retrievable(curve: Mapping[float, tuple[float, float]]) -> float | None:
    """The first hour (of logs after new items arrived) at which a model retrieves them: its
    new-item recall is above zero by more than two standard errors there and at every later
    hour measured. `curve`: hour -> (recall, standard error). None: not by the last hour.

    "At every later hour" keeps one lucky cut from counting: a model that retrieves new
    items after 12 hours of logs but not after 24 has not learned to place them."""
    hours = sorted(curve)
    first: float | None = None
    for hour in hours:
        recall, se = curve[hour]
        retrieves = bool(np.isfinite(recall)) and recall > 2 * (se if np.isfinite(se) else 0.0)
        if retrieves and first is None:
            first = hour
        elif not retrieves:
            first = None
    return first
