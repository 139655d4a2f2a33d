"""The validation split carved from the end of T1 (never T2), and recall measured on it.

Early stopping, EASE's lambda and the choice between preranker and ANN order need a held-out
signal that the test period T2 never provides. The split:

- Validation users: up to `holdout.users` users, and at most `holdout.max_user_fraction` of
  the users with at least `holdout.min_history` T1 interactions (sampled with `holdout.seed`),
  among those eligible under `holdout.truth`.
- For each, the end of their T1 is the validation period: its new items are the truth, and
  those rows are held out of everything that trains (the training pairs, by the target's
  time; the preranker's examples; the classic peers' user-item matrix). Every other user's T1
  is used whole, so the models lose little data.

What the end is (`holdout.truth`):

- "next_visit" (the default): every row after the user's last pause of at least
  `holdout.visit_gap_hours`. T2 starts at one global cut, and the users it tests come back
  months after their last T1 row. MovieLens users rate in bursts, so the last rows of a
  user's own T1 are most often the rest of the session their triggers came from. A session
  signal predicts that tail and not T2, and the preranker learns on this split and the
  serving order is chosen on it; a later visit is the nearest T1 has to T2's truth
  (`bench/truth_gap.py` measures both gaps; docs/results.md has them).
  Users who never paused that long in T1 are not eligible.
- "session_tail": the last `holdout.tail_fraction` of the user's rows (at least one; every
  row at or after that user's cut timestamp).

Why per user and not one global time cut: MovieLens users rate in bursts, so the last 10% of
T1 by time belongs to a few hundred users (about 390 on ml-1m): too few to tell epochs apart.

The split's users are halved (`HoldoutSplit.halves`): the preranker learns on one half (no
model trained on those users' held-out rows, so its features look as they will at serving
time), and the serving order is chosen on the other.

`ann_order_recall` is the early-stopping metric: per trigger the exact top `keep` items by a
score function (an embedding's inner product, or a peer's item-item scores), pooled across the
user's triggers, the top `top_k`, and recall@K against the held-out items. `keep` and `top_k`
are the evaluation's (`eval.keep_per_head`, `eval.top_k`). It searches exactly because no index
exists while a model trains; the serving-order choice goes through the real index and K_ann
(mtmh/eval/evaluate.py), as the test period does.

Example:
    split = load_holdout(run_dir, cfg.holdout, max_triggers=50)
    keep = split.training_mask(user_ids, timestamps)           # rows that may train
    recall = ann_order_recall(lambda t: emb[t] @ emb.T, split, keep=30, top_k=500)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mtmh.atomic_file import write_atomically
from mtmh.config import HoldoutConfig
from mtmh.data.split import HOUR


@dataclass(frozen=True)
class HoldoutUser:
    user_id: int
    history: np.ndarray  # [T] T1 items before the user's cut, oldest first
    triggers: np.ndarray  # most recent distinct items before the cut, most recent first
    truth: np.ndarray  # distinct items at or after the cut, not in the history (sorted)
    cut: int = 0  # timestamp: this user's rows at or after it are held out
    # [len(truth)] the largest weight (rating) each truth item got after the cut
    truth_weights: np.ndarray | None = None


@dataclass(frozen=True)
class HoldoutSplit:
    users: list[HoldoutUser]

    @property
    def user_ids(self) -> np.ndarray:
        return np.array(sorted(u.user_id for u in self.users), dtype=np.int64)

    def training_mask(self, user_ids: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """[M] bool: True for the rows (interactions, or pairs by target time) that may train."""
        if not self.users:
            return np.ones(len(user_ids), bool)
        order = sorted(self.users, key=lambda u: u.user_id)
        ids = np.array([u.user_id for u in order], np.int64)
        cuts = np.array([u.cut for u in order], np.int64)
        pos = np.clip(np.searchsorted(ids, user_ids), 0, len(ids) - 1)
        held = (ids[pos] == user_ids) & (timestamps >= cuts[pos])
        return ~held

    def __len__(self) -> int:
        return len(self.users)

    def halves(self, seed: int, fit_fraction: float = 0.5) -> tuple[HoldoutSplit, HoldoutSplit]:
        """(fit, choose): a seeded partition of the users. The preranker learns on `fit`;
        the serving order is chosen on `choose`, users it never saw."""
        if len(self.users) < 2:
            return HoldoutSplit(list(self.users)), HoldoutSplit([])
        order = np.random.default_rng(seed).permutation(len(self.users))
        n_fit = min(len(self.users) - 1, max(1, round(fit_fraction * len(self.users))))
        fit, choose = sorted(order[:n_fit]), sorted(order[n_fit:])
        return HoldoutSplit([self.users[i] for i in fit]), HoldoutSplit(
            [self.users[i] for i in choose]
        )


_MAKING = threading.Lock()  # one split made at a time in a process


def load_holdout(run_dir: Path, cfg: HoldoutConfig, max_triggers: int) -> HoldoutSplit:
    """The split of RUN/data/t1 (empty when `cfg.users` is 0).

    Every stage that trains or chooses needs it (each training worker, the peers, the
    prerankers, the order choice): it is made from T1 once and kept in RUN/holdout/, keyed by
    the T1 files and the settings, so the others read it back instead of sorting T1 again."""
    t1 = run_dir / "data" / "t1"
    if cfg.users == 0:
        return HoldoutSplit(users=[])
    if not t1.is_dir():
        raise FileNotFoundError(
            f"{t1} not found: the validation split needs the prepared T1 "
            "(run ray_jobs/prepare_data.py, or set holdout.users=0)"
        )
    files = sorted(
        (str(p.relative_to(t1)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in t1.rglob("*")
        if p.is_file()
    )
    blob = json.dumps([files, dataclasses.asdict(cfg), max_triggers], sort_keys=True)
    cache = run_dir / "holdout" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pkl"
    # The driver's threads (the peers beside the trainings' pairs) need it at the same time:
    # one makes it, the others wait and read it back.
    with _MAKING:
        if cache.is_file():
            with cache.open("rb") as fh:
                split: HoldoutSplit = pickle.load(fh)
            return split
        split = make_holdout(t1, cfg, max_triggers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        pickled = pickle.dumps(split, protocol=pickle.HIGHEST_PROTOCOL)
        write_atomically(cache, lambda p: p.write_bytes(pickled))  # readers never see a part
    return split


def make_holdout(t1: Path, cfg: HoldoutConfig, max_triggers: int) -> HoldoutSplit:
    """The split, computed from the T1 files in `t1`."""
    table = pq.read_table(t1, columns=["user_id", "item_id", "timestamp", "weight"]).sort_by(
        [("user_id", "ascending"), ("timestamp", "ascending"), ("item_id", "ascending")]
    )
    user = table["user_id"].to_numpy()
    item = table["item_id"].to_numpy().astype(np.int64)
    ts = table["timestamp"].to_numpy().astype(np.int64)
    weight = table["weight"].to_numpy().astype(np.float32)
    bounds = np.flatnonzero(np.diff(user)) + 1
    candidates: list[HoldoutUser] = []
    with_history = 0  # users with `min_history` rows: what the fraction cap is of
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(user)], strict=True):
        if hi - lo < cfg.min_history:
            continue
        with_history += 1
        start = first_held_out(ts[lo:hi], cfg)
        if start is None:
            continue
        cut = int(ts[lo + start])  # rows tied with the first held-out one go with it
        before, after = item[lo:hi][ts[lo:hi] < cut], item[lo:hi][ts[lo:hi] >= cut]
        if len(before) == 0 or len(after) == 0:
            continue
        truth = np.setdiff1d(after, before)
        if len(truth) == 0:
            continue
        after_weights = weight[lo:hi][ts[lo:hi] >= cut]
        best = np.full(len(truth), -np.inf, np.float32)
        np.maximum.at(
            best,
            np.searchsorted(truth, after[np.isin(after, truth)]),
            after_weights[np.isin(after, truth)],
        )
        rev = before[::-1]
        _, first = np.unique(rev, return_index=True)
        triggers = rev[np.sort(first)][:max_triggers]
        candidates.append(HoldoutUser(int(user[lo]), before, triggers, truth, cut, best))
    wanted = min(cfg.users, max(1, int(cfg.max_user_fraction * with_history)))
    if len(candidates) > wanted:
        rng = np.random.default_rng(cfg.seed)
        chosen = np.sort(rng.choice(len(candidates), wanted, replace=False))
        candidates = [candidates[i] for i in chosen]
    return HoldoutSplit(users=candidates)


def first_held_out(timestamps: np.ndarray, cfg: HoldoutConfig) -> int | None:
    """Index of the first held-out row among one user's rows in time order (None: the user
    has no validation period under `cfg.truth`)."""
    if cfg.truth == "session_tail":
        return len(timestamps) - max(1, round(cfg.tail_fraction * len(timestamps)))
    pauses = np.flatnonzero(np.diff(timestamps) >= cfg.visit_gap_hours * HOUR)
    return int(pauses[-1]) + 1 if len(pauses) else None


ScoreFn = Callable[[np.ndarray], torch.Tensor]  # [T] trigger ids -> [T, N] item scores
VAL_KS = (100, 500)  # validation recall@K; their mean is the validation score


def validation_score(recall: Mapping[Any, float]) -> float:
    """The one number early stopping, EASE's lambda and the order choice maximise: the mean
    of recall@100 and recall@500 (keyed by K, or by "recall@K" as in the evaluation)."""
    return float(np.mean([recall[k] if k in recall else recall[f"recall@{k}"] for k in VAL_KS]))


@torch.no_grad()
def ann_order_recall(
    scores: ScoreFn,
    split: HoldoutSplit,
    *,
    keep: int,
    top_k: int,
    ks: Sequence[int] = VAL_KS,
) -> dict[int, float]:
    """{K: mean recall@K} over the split's users, candidates pooled in ANN (score) order."""
    if not split.users:
        return {k: float("nan") for k in ks}
    sums = dict.fromkeys(ks, 0.0)
    for user in split.users:
        s = scores(np.ascontiguousarray(user.triggers)).float().clone()  # [T, N]
        n = s.shape[1]
        s[:, torch.as_tensor(user.history)] = -torch.inf  # seen items are never candidates
        k = min(keep, n)
        values, idx = s.topk(k, dim=1)
        valid = torch.isfinite(values)
        pooled = torch.zeros(n).index_add_(0, idx[valid], values[valid])
        counted = torch.zeros(n).index_add_(0, idx[valid], torch.ones(int(valid.sum())))
        pooled[counted == 0] = -torch.inf
        found = int(torch.isfinite(pooled).sum())
        ranked = pooled.topk(min(top_k, found)).indices.numpy()
        truth = set(user.truth.tolist())
        for k_ in ks:
            sums[k_] += len(truth.intersection(ranked[:k_].tolist())) / len(truth)
    return {k: v / len(split.users) for k, v in sums.items()}


def embedding_scores(emb: torch.Tensor) -> ScoreFn:
    """Inner-product scores of an [N, D] embedding table."""
    return lambda triggers: emb[torch.as_tensor(triggers)] @ emb.T
