"""The paper's metrics (spec section 7), on plain Python inputs so tests can hand-compute them.

- recall@K: the share of a user's T2 items found in the user's top K, averaged over users.
- NDCG@K: binary-relevance DCG of the top K over the best DCG the user's truth allows, so a
  hit at rank 1 counts more than one at rank 20 (what a user sees first).
- topic match: the share of (trigger, candidate) pairs, both labelled, that share a label
  (see mtmh/eval/topic_match.py for why unlabelled pairs are left out).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


def recall_at(ranked: Sequence[int], truth: set[int], ks: Iterable[int]) -> dict[int, float]:
    """{K: |top-K ∩ truth| / |truth|} for one user; truth must not be empty."""
    if not truth:
        raise ValueError("recall is undefined for a user with no T2 items")
    out = {}
    for k in ks:
        out[k] = len(truth.intersection(ranked[:k])) / len(truth)
    return out


def ndcg_at(ranked: Sequence[int], truth: set[int], k: int) -> float:
    """sum over hits in the top K of 1/log2(rank + 1), over the same sum for min(K, |truth|)
    hits at the top; truth must not be empty."""
    if not truth:
        raise ValueError("NDCG is undefined for a user with no T2 items")
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in truth)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(truth))))
    return float(dcg / ideal)


@dataclass
class MatchCounter:
    """Running topic-match counts over (trigger, candidate) pairs at one label level, and the
    matches random candidates would have scored for the same triggers (`random_rate`)."""

    labels: Sequence[frozenset[str]]  # per item id
    # Per item id: chance that a random other labelled item matches it
    # (mtmh/eval/topic_match.py:random_match_probability); None leaves random_rate NaN.
    random_probability: Sequence[float] | np.ndarray | None = None
    hits: int = 0
    total: int = 0
    expected: float = 0.0
    # Per item id, its labels as bits of one int (0: unlabelled): two items match when their
    # masks share a bit, an AND instead of a set intersection on the evaluation's hot path.
    masks: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        bit: dict[str, int] = {}
        self.masks = [
            sum(1 << bit.setdefault(label, len(bit)) for label in sorted(item_labels))
            for item_labels in self.labels
        ]

    def add(self, trigger: int, candidates: Iterable[int]) -> None:
        t = self.masks[trigger]
        if not t:
            return
        masks = self.masks
        labelled = [masks[c] for c in candidates if masks[c]]
        self.total += len(labelled)
        self.hits += sum(1 for m in labelled if m & t)
        if self.random_probability is not None:
            self.expected += len(labelled) * float(self.random_probability[trigger])

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    @property
    def random_rate(self) -> float:
        """The match rate uniformly random candidates would have for the same pairs."""
        ok = self.total and self.random_probability is not None
        return self.expected / self.total if ok else float("nan")


@dataclass
class UserMeans:
    """Means over users of per-user values, by key, with their standard errors: how large a
    gap between models is noise."""

    sums: dict[Hashable, float] = field(default_factory=dict)
    squares: dict[Hashable, float] = field(default_factory=dict)
    counts: dict[Hashable, int] = field(default_factory=dict)

    def add(self, key: Hashable, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.squares[key] = self.squares.get(key, 0.0) + value * value
        self.counts[key] = self.counts.get(key, 0) + 1

    def measured(self) -> list[Hashable]:
        """The keys with at least one value."""
        return list(self.sums)

    def mean(self, key: Hashable) -> float:
        n = self.counts.get(key, 0)
        return self.sums[key] / n if n else float("nan")

    def se(self, key: Hashable) -> float:
        """Standard error of the mean over the users that gave `key` a value."""
        n = self.counts.get(key, 0)
        if n < 2:
            return float("nan")
        mean = self.mean(key)
        var = max(self.squares[key] / n - mean * mean, 0.0) * n / (n - 1)
        return float((var / n) ** 0.5)


@dataclass
class RecallMean:
    """Mean of per-user recall@K (and NDCG@`ndcg_k`), with standard errors over users."""

    ks: tuple[int, ...]
    ndcg_k: int = 20
    values: UserMeans = field(default_factory=UserMeans)
    users: int = 0

    def add(self, ranked: Sequence[int], truth: set[int]) -> None:
        for k, v in recall_at(ranked, truth, self.ks).items():
            self.values.add(k, v)
        self.values.add("ndcg", ndcg_at(ranked, truth, self.ndcg_k))
        self.users += 1

    def standard_errors(self) -> dict[int, float]:
        return {k: self.values.se(k) for k in self.ks}

    def means(self) -> dict[int, float]:
        return {k: self.values.mean(k) for k in self.ks}

    def ndcg(self) -> dict[str, float]:
        """{"ndcg@K": mean, "ndcg@K_se": its standard error}."""
        key = f"ndcg@{self.ndcg_k}"
        return {key: self.values.mean("ndcg"), f"{key}_se": self.values.se("ndcg")}
