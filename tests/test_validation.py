"""The validation split carved from the end of T1, and its ANN-order recall against a loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.config import HoldoutConfig
from mtmh.validation import HoldoutSplit, HoldoutUser, ann_order_recall, load_holdout


def write_t1(run: Path, rows: list[tuple[int, int, int]]) -> Path:
    """RUN/data/t1 from (user, item, timestamp) rows."""
    folder = run / "data" / "t1"
    folder.mkdir(parents=True)
    user, item, ts = (np.array(c) for c in zip(*rows, strict=True))
    pq.write_table(
        pa.table({"user_id": pa.array(user, pa.int64()), "item_id": pa.array(item, pa.int32()),
                  "timestamp": pa.array(ts, pa.int64()),
                  "weight": pa.array(np.ones(len(user)), pa.float32())}),
        folder / "part-0.parquet",
    )  # fmt: skip
    return run


def test_holdout_takes_the_tail_of_each_sampled_users_t1(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, 50)), int(t)) for u in range(40) for t in range(u, 100 + u, 5)]
    rows += [(99, 1, 0), (99, 2, 1)]  # too short a history to validate on
    run = write_t1(tmp_path, rows)
    cfg = HoldoutConfig(users=8, tail_fraction=0.25, max_user_fraction=1.0)
    split = load_holdout(run, cfg, max_triggers=5)
    assert len(split) == 8 and 99 not in split.user_ids
    for user in split.users:
        mine = sorted((t, i) for u, i, t in rows if u == user.user_id)
        assert user.cut == mine[-5][0]  # the last quarter of 20 rows
        before = {i for t, i in mine if t < user.cut}
        after = {i for t, i in mine if t >= user.cut}
        assert set(user.truth.tolist()) == after - before
        assert set(user.history.tolist()) == before
        assert len(user.triggers) <= 5 and set(user.triggers.tolist()) <= before
    # Only the validation users' tails are held out of training.
    users = np.array([u for u, *_ in rows])
    ts = np.array([t for *_, t in rows])
    held = ~split.training_mask(users, ts)
    assert set(users[held].tolist()) == set(split.user_ids.tolist())
    cut_of = {u.user_id: u.cut for u in split.users}
    want = sum(1 for u, _, t in rows if u in cut_of and t >= cut_of[u])
    assert held.sum() == want == 8 * 5
    # A fraction cap keeps most users whole on a small log.
    eligible = len(load_holdout(run, HoldoutConfig(users=1000, max_user_fraction=1.0), 5))
    capped = load_holdout(run, HoldoutConfig(users=1000, max_user_fraction=0.25), 5)
    assert eligible >= 38 and len(capped) == int(0.25 * eligible)


def test_no_holdout_when_users_is_zero(tmp_path: Path) -> None:
    split = load_holdout(tmp_path, HoldoutConfig(users=0), max_triggers=5)
    assert not split
    assert split.training_mask(np.array([1, 2]), np.array([5, 10**12])).all()


def test_ann_order_recall_equals_a_naive_loop() -> None:
    rng = np.random.default_rng(1)
    n, d = 30, 4
    emb = torch.as_tensor(rng.normal(size=(n, d)).astype(np.float32))
    users = []
    for u in range(6):
        hist = rng.choice(n, 5, replace=False)
        truth = np.setdiff1d(rng.choice(n, 4, replace=False), hist)
        if len(truth):
            users.append(HoldoutUser(u, np.sort(hist), hist[::-1][:3], truth))
    split = HoldoutSplit(users=users)
    keep, top_k = 4, 7
    got = ann_order_recall(lambda t: emb[torch.as_tensor(t)] @ emb.T, split, keep, top_k, (3, 7))
    want = {3: 0.0, 7: 0.0}
    for user in users:
        scores: dict[int, float] = {}
        for trig in user.triggers:
            sims = (emb @ emb[trig]).tolist()
            ranked = sorted((j for j in range(n) if j not in set(user.history.tolist())),
                            key=lambda j: -sims[j])[:keep]  # fmt: skip
            for j in ranked:
                scores[j] = scores.get(j, 0.0) + sims[j]
        pooled = sorted(scores, key=lambda j: -scores[j])[:top_k]
        for k in want:
            want[k] += len(set(pooled[:k]) & set(user.truth.tolist())) / len(user.truth)
    for k in want:
        assert abs(got[k] - want[k] / len(users)) < 1e-6
