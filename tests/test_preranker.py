"""The preranker's training examples and model."""

from __future__ import annotations

import numpy as np
import torch

from mtmh.config import PrerankerConfig
from mtmh.data.histories import recent_window
from mtmh.preranker.examples import user_examples
from mtmh.preranker.model import PrerankerModel


def test_examples_pair_each_engagement_with_the_history_before_it() -> None:
    batch = {
        "item_id": np.array([30, 10, 20]),
        "timestamp": np.array([3, 1, 2]),  # out of order on purpose
        "weight": np.array([5.0, 4.0, 2.0], np.float32),
    }
    out = user_examples(batch, history_length=3, threshold=4.0).to_pydict()
    assert out["history"] == [[-1, -1, 10], [-1, 10, 20]]
    assert out["target_id"] == [20, 30]
    assert out["satisfied"] == [0.0, 1.0]
    single = {k: v[:1] for k, v in batch.items()}
    assert user_examples(single, 3, 4.0).num_rows == 0  # nothing to predict from


def test_recent_window_pads_on_the_left() -> None:
    np.testing.assert_array_equal(recent_window(np.array([1, 2, 3]), 5), [-1, -1, 1, 2, 3])
    np.testing.assert_array_equal(recent_window(np.array([1, 2, 3]), 2), [2, 3])


def test_preranker_learns_a_next_item_rule_and_scores_candidates() -> None:
    torch.manual_seed(0)
    n = 20
    cfg = PrerankerConfig(history_length=2, dim=16, hidden_dim=32, lr=1e-2)
    model = PrerankerModel(n, cfg)
    # The next item is always last + 1, satisfied when it is even.
    last = torch.arange(n - 1)
    history = torch.stack([torch.full_like(last, -1), last], dim=1)
    target = last + 1
    satisfied = (target % 2 == 0).float()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    first = None
    for _ in range(300):
        losses = model(history, target, satisfied)
        first = first if first is not None else float(losses["loss"].detach())
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    assert float(losses["loss"]) < 0.3 * first
    with torch.no_grad():
        user = model.user_vectors(torch.tensor([[-1, 4]]))
        scores = model.score(user, torch.arange(n)[None])
    assert int(scores.argmax()) == 5
