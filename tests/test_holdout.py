"""The validation split carved from the end of T1, and its ANN-order recall against a loop."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import mtmh.holdout
from mtmh.config import HoldoutConfig
from mtmh.holdout import HoldoutSplit, HoldoutUser, ann_order_recall, load_holdout


def write_t1(run: Path, rows: list[tuple[int, int, int]]) -> Path:
    """RUN/data/t1 from (user, item, timestamp) rows."""
    folder = run / "data" / "t1"
    folder.mkdir(parents=True)
    user, item, ts = (np.array(c) for c in zip(*rows, strict=True))
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(user, pa.int64()),
                "item_id": pa.array(item, pa.int32()),
                "timestamp": pa.array(ts, pa.int64()),
                "weight": pa.array(np.ones(len(user)), pa.float32()),
            }
        ),
        folder / "part-0.parquet",
    )
    return run


def test_holdout_takes_the_tail_of_each_sampled_users_t1(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, 50)), int(t)) for u in range(40) for t in range(u, 100 + u, 5)]
    rows += [(99, 1, 0), (99, 2, 1)]  # too short a history to validate on
    run = write_t1(tmp_path, rows)
    cfg = HoldoutConfig(users=8, truth="session_tail", tail_fraction=0.25, max_user_fraction=1.0)
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
    # A fraction cap keeps most users whole on a small log: a quarter of the 40 users with
    # `min_history` rows (user 99 has two).
    tail = HoldoutConfig(users=1000, truth="session_tail", max_user_fraction=1.0)
    eligible = len(load_holdout(run, tail, 5))
    capped = load_holdout(run, dataclasses.replace(tail, max_user_fraction=0.25), 5)
    assert eligible >= 38 and len(capped) == int(0.25 * 40)


def test_next_visit_holds_out_the_rows_after_the_last_long_pause(tmp_path: Path) -> None:
    hour = 3600
    rows = [
        # Two visits a week apart, the second with a short pause inside it: held out whole.
        (1, 10, 0),
        (1, 11, 60),
        (1, 12, 120),
        (1, 13, 7 * 24 * hour),
        (1, 14, 7 * 24 * hour + 2 * hour),
        (1, 10, 7 * 24 * hour + 3 * hour),
        # One long session, its pauses all under a day: not eligible.
        (2, 10, 0),
        (2, 11, 20 * hour),
        (2, 12, 40 * hour),
        (2, 13, 41 * hour),
        (2, 14, 42 * hour),
        # Three visits: only the last is held out.
        (3, 20, 0),
        (3, 21, 3 * 24 * hour),
        (3, 22, 3 * 24 * hour + 1),
        (3, 23, 9 * 24 * hour),
        (3, 24, 9 * 24 * hour + 5),
    ]
    run = write_t1(tmp_path, rows)
    cfg = HoldoutConfig(users=10, max_user_fraction=1.0, visit_gap_hours=24)
    assert cfg.truth == "next_visit"  # the default: T2's users also come back later
    split = load_holdout(run, cfg, max_triggers=5)
    by_id = {u.user_id: u for u in split.users}
    assert sorted(by_id) == [1, 3]
    assert by_id[1].cut == 7 * 24 * hour and by_id[1].truth.tolist() == [13, 14]
    assert by_id[1].triggers.tolist() == [12, 11, 10]
    assert by_id[3].cut == 9 * 24 * hour and by_id[3].truth.tolist() == [23, 24]
    assert by_id[3].history.tolist() == [20, 21, 22]
    # A shorter pause makes user 2's last 20-hour gap a visit too.
    shorter = load_holdout(run, dataclasses.replace(cfg, visit_gap_hours=12), max_triggers=5)
    assert sorted(u.user_id for u in shorter.users) == [1, 2, 3]


def test_threads_that_need_the_split_at_once_make_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline's driver fits the peers in a thread while the trainings' pairs are made.
    run = write_t1(tmp_path, [(u, i, u + i) for u in range(20) for i in range(12)])
    cfg = HoldoutConfig(users=4, truth="session_tail", max_user_fraction=1.0)
    made = []
    real = mtmh.holdout.make_holdout

    def slow(*args: object) -> HoldoutSplit:
        made.append(1)
        time.sleep(0.3)  # both threads are inside load_holdout by now
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(mtmh.holdout, "make_holdout", slow)
    got: list[HoldoutSplit] = []
    threads = [
        threading.Thread(target=lambda: got.append(load_holdout(run, cfg, 5))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(got) == 2
    assert got[0].user_ids.tolist() == got[1].user_ids.tolist()
    assert [p.suffix for p in (run / "holdout").iterdir()] == [".pkl"]  # no stray temp file


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
    got = ann_order_recall(
        lambda t: emb[torch.as_tensor(t)] @ emb.T, split, keep=keep, top_k=top_k, ks=(3, 7)
    )
    want = {3: 0.0, 7: 0.0}
    for user in users:
        scores: dict[int, float] = {}
        for trig in user.triggers:
            sims = (emb @ emb[trig]).tolist()
            ranked = sorted(
                (j for j in range(n) if j not in set(user.history.tolist())), key=lambda j: -sims[j]
            )[:keep]
            for j in ranked:
                scores[j] = scores.get(j, 0.0) + sims[j]
        pooled = sorted(scores, key=lambda j: -scores[j])[:top_k]
        for k in want:
            want[k] += len(set(pooled[:k]) & set(user.truth.tolist())) / len(user.truth)
    for k in want:
        assert abs(got[k] - want[k] / len(users)) < 1e-6


def test_holdout_history_is_in_time_order_with_the_truths_best_weight(tmp_path: Path) -> None:
    # Item ids fall over time, so id order and time order disagree.
    rows = [(1, 9, 1), (1, 7, 2), (1, 5, 3), (1, 3, 4), (1, 1, 5), (1, 0, 6)]
    run = write_t1(tmp_path, rows)
    (user,) = load_holdout(
        run,
        HoldoutConfig(users=1, truth="session_tail", tail_fraction=0.3, max_user_fraction=1.0),
        max_triggers=5,
    ).users
    assert user.history.tolist() == [9, 7, 5, 3]  # oldest first, as the preranker reads it
    assert user.triggers.tolist() == [3, 5, 7, 9]  # most recent first
    assert user.truth.tolist() == [0, 1] and user.truth_weights is not None
    assert user.truth_weights.tolist() == [1.0, 1.0]


def test_halves_partition_the_users_the_same_way_every_time() -> None:
    users = [
        HoldoutUser(u, np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([1]))
        for u in range(9)
    ]
    fit, choose = HoldoutSplit(users).halves(seed=0)
    assert len(fit) == 4 or len(fit) == 5
    ids = fit.user_ids.tolist() + choose.user_ids.tolist()
    assert sorted(ids) == list(range(9)) and not set(fit.user_ids) & set(choose.user_ids)
    again, _ = HoldoutSplit(users).halves(seed=0)
    assert again.user_ids.tolist() == fit.user_ids.tolist()
    one, none = HoldoutSplit(users[:1]).halves(seed=0)
    assert len(one) == 1 and not none


def test_ease_lambda_is_chosen_with_the_evaluations_keep_and_top_k(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mtmh.config import EvalConfig
    from mtmh.peers.build import _choose_lambda
    from mtmh.peers.ease import EASE, gram

    rng = np.random.default_rng(0)
    x = (rng.random((40, 25)) < 0.3).astype(np.float32)
    import scipy.sparse as sp

    g = gram(sp.csr_matrix(x))
    users = [
        HoldoutUser(u, np.array([u % 25]), np.array([u % 25]), np.array([(u + 3) % 25]))
        for u in range(10)
    ]
    split = HoldoutSplit(users)
    ec = EvalConfig(keep_per_head=2, top_k=3)
    best, curve = _choose_lambda(g, split, (1.0, 50.0), ec)
    for row in curve:
        want = ann_order_recall(EASE(g, row["lambda"]).scores, split, keep=2, top_k=3)
        assert row["recall@100"] == want[100] and row["recall@500"] == want[500]
    # Two values: the choice is always an edge, and the log says so.
    assert f"best validation lambda {best.lam:g} is at the edge" in caplog.text
