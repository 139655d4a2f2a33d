"""How often the training log co-engaged a trigger with a candidate, as the preranker reads it.

A pair (i, j) is one row of RUN/data/pairs: a user engaged with j within the pair window after
i (the same rows the item towers learn from, less the validation split's held-out ones). Its
count is the classic item-to-item signal (ItemCF's co-occurrence) that a ranking engineer puts
beside the retrieval similarities: it is exact for the trigger at hand, where an embedding
only approximates it.

As with the item statistics, the counts answer "as of time t" (by the target's timestamp): a
preranker example is cut per user, and must not count pairs from after its user's cut.
`PairLog.at(t)` is a view that looks counts up on demand; `PairCounts` is the snapshot at
the end of the training log that serving reads (saved with the item statistics).

Example:
    log = PairLog(triggers, targets, target_times, num_items)
    log.at(cut).count(np.array([3, 3]), np.array([7, 9]))   # [2] co-engagements before cut
    snapshot = log.at(log.end).snapshot()                   # PairCounts, to save
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


class PairLookup(Protocol):
    def count(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray: ...

    def summed_over(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray: ...

    def snapshot(self) -> PairCounts: ...


def pair_ids(triggers: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """[M] int64 trigger * N + item (ids >= 0)."""
    return np.asarray(triggers, np.int64) * num_items + np.asarray(items, np.int64)


def _ranks_of_triggers(pairs: np.ndarray, triggers: np.ndarray, num_items: int) -> np.ndarray:
    """[M] positions in the sorted pair ids of every pair whose trigger is one of `triggers`
    (a trigger's pairs are one contiguous run of them)."""
    t = np.unique(np.asarray(triggers, np.int64))
    lo = np.searchsorted(pairs, t * num_items)
    hi = np.searchsorted(pairs, (t + 1) * num_items)
    lengths = hi - lo
    offsets = np.cumsum(lengths) - lengths  # where each run starts in the output
    return np.repeat(lo - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _summed(pairs: np.ndarray, counts: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """[len(items), 2] per item: the counts of `pairs` (ids) with it as target, summed; and
    their shares of their trigger's counts, summed (sum over triggers of P(item | trigger))."""
    triggers, targets = np.divmod(pairs, num_items)
    counts = counts.astype(np.float64)
    _, of_trigger = np.unique(triggers, return_inverse=True)
    share = counts / np.maximum(np.bincount(of_trigger, weights=counts)[of_trigger], 1.0)
    uniq, inverse = np.unique(targets, return_inverse=True)
    sums = np.stack(
        [np.bincount(inverse, weights=w, minlength=len(uniq)) for w in (counts, share)], axis=1
    )
    if not len(uniq):
        return np.zeros((len(items), 2))
    at, found = _lookup(uniq, np.asarray(items, np.int64))
    return np.where(found[:, None], sums[at], 0.0)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, found) of each key in a sorted array."""
    if not len(sorted_keys):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, sorted_keys[at] == keys


@dataclass(frozen=True)
class PairCounts:
    """Co-engagements per distinct (trigger, target) pair as of one moment."""

    pairs: np.ndarray  # [P] sorted pair ids (`pair_ids`)
    counts: np.ndarray  # [P] int64, >= 1
    num_items: int

    def count(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[M] int64 co-engagements of each (trigger, item), 0 for pairs never seen."""
        at, found = _lookup(self.pairs, pair_ids(triggers, items, self.num_items))
        return np.where(found, self.counts[at] if len(self.counts) else 0, 0)

    def summed_over(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[len(items), 2] each item's co-engagements summed over all `triggers`, and their
        shares of each trigger's co-engagements summed."""
        at = _ranks_of_triggers(self.pairs, triggers, self.num_items)
        return _summed(self.pairs[at], self.counts[at], items, self.num_items)

    def snapshot(self) -> PairCounts:
        return self

    @classmethod
    def empty(cls, num_items: int) -> PairCounts:
        """No pair co-engaged (a log with no pairs, or a test's statistics)."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), num_items)


class PairLog:
    """The training log's pairs, sorted by (pair, target time rank), for counts as of any
    moment: [M] keys pair_rank * slots + time_rank, `slots` = distinct times + 1."""

    def __init__(
        self, triggers: np.ndarray, targets: np.ndarray, timestamps: np.ndarray, num_items: int
    ) -> None:
        self.num_items = num_items
        self.pairs, rank = np.unique(pair_ids(triggers, targets, num_items), return_inverse=True)
        self.times = np.unique(np.asarray(timestamps, np.int64))
        self.slots = len(self.times) + 1
        if len(self.pairs) * self.slots > _INT64_MAX:
            raise ValueError(
                f"{len(self.pairs)} distinct pairs x {len(self.times)} distinct timestamps do "
                "not fit one int64 key; coarsen the timestamps first"
            )
        time_rank = np.searchsorted(self.times, np.asarray(timestamps, np.int64))
        self.keys = np.sort(rank.astype(np.int64) * self.slots + time_rank)
        self.end = int(self.times[-1]) + 1 if len(self.times) else 0

    def at(self, when: int) -> PairsBefore:
        """The counts of the pairs whose target came before `when` (a timestamp)."""
        return PairsBefore(self, int(np.searchsorted(self.times, when)))


@dataclass(frozen=True)
class PairsBefore:
    """A `PairLog` seen as of one moment: its pairs with a time rank below `before`."""

    log: PairLog
    before: int  # distinct timestamps earlier than the moment

    def _counts_of_ranks(self, rank: np.ndarray) -> np.ndarray:
        start = rank * self.log.slots
        keys = self.log.keys
        return np.searchsorted(keys, start + self.before) - np.searchsorted(keys, start)

    def count(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[M] int64 co-engagements of each (trigger, item) before the moment."""
        log = self.log
        at, found = _lookup(log.pairs, pair_ids(triggers, items, log.num_items))
        return np.where(found, self._counts_of_ranks(at), 0).astype(np.int64)

    def summed_over(self, triggers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[len(items), 2] as `PairCounts.summed_over`, before the moment."""
        log = self.log
        at = _ranks_of_triggers(log.pairs, triggers, log.num_items)
        return _summed(log.pairs[at], self._counts_of_ranks(at), items, log.num_items)

    def snapshot(self) -> PairCounts:
        """Every pair's count as of the moment (pairs not yet seen left out)."""
        counts = self._counts_of_ranks(np.arange(len(self.log.pairs), dtype=np.int64))
        seen = counts > 0
        return PairCounts(self.log.pairs[seen], counts[seen].astype(np.int64), self.log.num_items)
