"""The preranker: its features, item statistics, model, training and what it ranks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from mtmh.config import load_config
from mtmh.holdout import HoldoutUser
from mtmh.preranker.examples import Examples, build_examples
from mtmh.preranker.features import candidate_features, feature_names
from mtmh.preranker.item_stats import DAY, ItemLog, ItemStats
from mtmh.preranker.model import PrerankerModel
from mtmh.preranker.ranker import Preranker
from mtmh.preranker.train import train_model
from mtmh.retrieval.heads import HeadSearch, NeighborHead
from mtmh.retrieval.ranking import blocked_items
from mtmh.retrieval.retriever import Retriever

HEADS = ("engagement", "relevance")


def _searched() -> dict[str, HeadSearch]:
    # Two triggers (0 most recent), K = 3, catalog of 10; faiss's -1 where a row ran short.
    return {
        "engagement": HeadSearch(
            np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.0]]),
            np.array([[4, 5, 6], [5, 7, -1]]),
        ),
        "relevance": HeadSearch(
            np.array([[0.6, 0.3, 0.2], [0.9, 0.4, 0.1]]),
            np.array([[6, 4, 8], [1, 5, 9]]),
        ),
    }


def test_features_are_computed_per_trigger_and_candidate_as_documented() -> None:
    stats = ItemStats(np.arange(10) * 2, np.full(10, 3.0, np.float32))
    blocked = blocked_items(10, [9])  # item 9 was seen
    triggers = np.array([2, 3])
    rows = candidate_features(_searched(), HEADS, triggers, blocked, stats)
    names = feature_names(HEADS)
    eng = rows["engagement"]
    col = {n: eng.features[:, i] for i, n in enumerate(names)}
    # Valid engagement rows: (t0: 4, 5, 6), (t1: 5, 7); the -1 is dropped.
    assert eng.items.tolist() == [4, 5, 6, 5, 7]
    assert eng.trigger_pos.tolist() == [0, 0, 0, 1, 1]
    assert col["own_sim"] == pytest.approx([0.9, 0.5, 0.1, 0.8, 0.7])
    assert col["log_rank"] == pytest.approx(np.log1p([0, 1, 2, 0, 1]))
    # The relevance head's view: item 4 is in its t0 list at 0.3, item 6 at 0.6; item 5 is
    # not, so it gets t0's lowest relevance similarity (0.2); at t1, 5 is there at 0.4, and
    # 7 is not (the lowest valid: 0.4, since 9 is seen).
    assert col["sim@relevance"] == pytest.approx([0.3, 0.2, 0.6, 0.4, 0.4])
    assert col["in@relevance"].tolist() == [1, 0, 1, 1, 0]
    # Item 5 is retrieved by both triggers' engagement lists; summed 0.5 + 0.8.
    assert col["log_hits@engagement"] == pytest.approx(np.log1p([1, 2, 1, 2, 1]))
    assert col["sim_sum@engagement"] == pytest.approx([0.9, 1.3, 0.1, 1.3, 0.7])
    assert col["log_hits@relevance"] == pytest.approx(np.log1p([1, 1, 1, 1, 0]))
    assert col["log_recency"] == pytest.approx(np.log1p([0, 0, 0, 1, 1]))
    assert col["log_triggers"] == pytest.approx(np.full(5, np.log1p(2)))
    assert col["log_count"] == pytest.approx(np.log1p([8, 10, 12, 10, 14]))
    assert col["head=engagement"].tolist() == [1] * 5 and col["head=relevance"].sum() == 0
    rel = rows["relevance"]
    assert rel.items.tolist() == [6, 4, 8, 1, 5]  # 9 is seen
    with pytest.raises(ValueError, match="lacks"):
        candidate_features(
            {"engagement": _searched()["engagement"]}, HEADS, triggers, blocked, stats
        )


def test_a_reach_keeps_a_heads_nearest_valid_rows_with_their_features_unchanged() -> None:
    stats = ItemStats(np.arange(10) * 2, np.full(10, 3.0, np.float32))
    blocked = blocked_items(10, [9])
    triggers = np.array([2, 3])
    full = candidate_features(_searched(), HEADS, triggers, blocked, stats)
    cut = candidate_features(
        _searched(), HEADS, triggers, blocked, stats, {"relevance": 2, "engagement": None}
    )
    # Relevance: t0 keeps 6, 4 (not 8); t1 keeps 1, 5 (9 is seen and does not count).
    assert cut["relevance"].items.tolist() == [6, 4, 1, 5]
    kept = [0, 1, 3, 4]  # those rows' places among the full rows
    np.testing.assert_array_equal(cut["relevance"].features, full["relevance"].features[kept])
    # Item 8, beyond the reach, still counts in the other head's cross-head features.
    np.testing.assert_array_equal(cut["engagement"].features, full["engagement"].features)


def test_item_log_counts_and_ages_only_what_came_before() -> None:
    items = np.array([0, 0, 1, 0, 2])
    ts = np.array([10, 20, 20, 30, 40]) * DAY
    log = ItemLog(items, ts, num_items=4)
    at25 = log.at(25 * DAY)
    assert at25.counts.tolist() == [2, 1, 0, 0]
    assert at25.age_days == pytest.approx([15.0, 5.0, 0.0, 0.0])
    end = log.at(log.end)
    assert end.counts.tolist() == [3, 1, 1, 0]
    assert log.at(0).counts.tolist() == [0, 0, 0, 0]


def test_threads_that_save_the_item_stats_at_once_each_write_it_whole(tmp_path: Path) -> None:
    # The pipeline's preranker fits beside the trainings and after them save the same
    # snapshot from two threads of one process; a temporary file named by the process alone
    # was renamed away under the other thread (FileNotFoundError).
    path = tmp_path / "item_stats.npz"
    n = 50_000
    stats = [ItemStats(np.full(n, k, np.int64), np.full(n, k, np.float32)) for k in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: [s.save(path) for _ in range(20)], stats))
    saved = ItemStats.load(path)
    assert saved.counts[0] in (1, 2) and (saved.counts == saved.counts[0]).all()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_an_untrained_preranker_is_ann_order_and_depends_on_the_trigger() -> None:
    model = PrerankerModel(len(feature_names(HEADS)), hidden_dim=8)
    pre = Preranker(model, HEADS, ItemStats(np.zeros(10, np.int64), np.zeros(10, np.float32)))
    searched = _searched()
    scores = pre.score(searched, np.array([2, 3]), blocked_items(10, [9]))
    for head, (sims, _, _) in searched.items():
        s = scores[head]
        valid = np.isfinite(s)
        for row in range(2):
            ok = valid[row]
            assert (
                np.argsort(-s[row][ok], kind="stable").tolist()
                == np.argsort(-sims[row][ok], kind="stable").tolist()
            )
    # Item 5 scores differently from its two triggers: the score reads the trigger.
    eng = scores["engagement"]
    assert eng[0, 1] != pytest.approx(eng[1, 0])
    assert np.isinf(eng[1, 2]) and np.all((eng[np.isfinite(eng)] > 0) & (eng[np.isfinite(eng)] < 1))


def _examples(n: int, seed: int) -> Examples:
    """Rows where engagement follows log_count (column 12) and not the similarity."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(feature_names(HEADS)))).astype(np.float32)
    p = 1 / (1 + np.exp(-(3 * x[:, 12] - 3)))
    engaged = (rng.random(n) < p).astype(np.float32)
    satisfied = engaged * (x[:, 13] > 0)
    return Examples(
        x, engaged, satisfied.astype(np.float32), np.ones(n, np.float32), np.arange(n) % 20
    )


def test_training_learns_what_predicts_engagement_and_keeps_the_best_epoch() -> None:
    cfg = load_config(
        overrides=["preranker.epochs=4", "preranker.batch_size=256", "preranker.check_fraction=0.2"]
    )
    users = [
        HoldoutUser(u, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        for u in range(20)
    ]
    model, summary = train_model(_examples(6000, 0), cfg, users)
    assert summary["check_users"] == 4 and summary["satisfaction_task"]
    curve = [r["check_logloss"] for r in summary["curve"]]
    assert min(curve) < 0.8 * curve[0] and summary["best_check_logloss"] == min(curve)
    x = torch.zeros(2, len(feature_names(HEADS)))
    x[0, 12], x[1, 12] = 2.0, -2.0
    with torch.no_grad():
        engage = torch.sigmoid(model(x)[:, 0])
    assert float(engage[0]) > 0.5 > float(engage[1])
    x[:, 13] = 2.0  # satisfied too: the probability is p(engage) * p(satisfied | engage)
    assert float(model.probability(x).detach()[0]) == pytest.approx(float(engage[0]), abs=0.1)


def test_examples_label_the_real_candidates_with_what_came_after_the_cut() -> None:
    ids = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], np.int32)
    head = NeighborHead(
        "p",
        "neighbors",
        "v",
        np.zeros((4, 0), np.float32),
        None,
        ids,
        np.tile(np.array([0.9, 0.5, 0.1], np.float32), (4, 1)),
    )
    log = ItemLog(np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]) * DAY, num_items=4)
    user = HoldoutUser(
        7,
        history=np.array([0]),
        triggers=np.array([0]),
        truth=np.array([2, 3]),
        cut=3 * DAY,
        truth_weights=np.array([5.0, 1.0]),
    )
    cfg = load_config(overrides=["preranker.max_examples=100000"])
    ret = Retriever({"neighbors": head}, k_ann=2, keep=2)
    ex = build_examples(ret, ("neighbors",), [user], log, cfg)
    # K_ann + 1 = 3 candidates of trigger 0: 1, 2, 3; 2 and 3 came after the cut, 2 with a
    # rating of 5 (satisfied).
    assert ex.engaged.tolist() == [0, 1, 1] and ex.satisfied.tolist() == [0, 1, 0]
    assert ex.user.tolist() == [7, 7, 7] and ex.weight.tolist() == [1, 1, 1]
    names = feature_names(("neighbors",))
    # As of the cut (day 3), candidate 1 has one engagement (day 2); 2 (day 3, at the cut)
    # and 3 (day 4) have none yet.
    assert ex.features[:, names.index("log_count")] == pytest.approx(np.log1p([1, 0, 0]))
