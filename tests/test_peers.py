"""The classic peers against plain formulas: ItemKNN's cosine, EASE's closed form, and the
neighbour tables that stand in for the ANN search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mtmh.peers import itemknn
from mtmh.peers.build import neighbor_table
from mtmh.peers.ease import EASE, gram
from mtmh.peers.itemknn import ItemKNN


def _matrix(seed: int = 0, users: int = 40, items: int = 12) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.3).astype(np.float32)
    dense[:, -1] = 0.0  # an item nobody engaged with
    return sp.csr_matrix(dense)


def test_itemknn_is_the_cosine_of_item_columns() -> None:
    x = _matrix()
    dense = x.toarray()
    knn = ItemKNN(x)
    got = knn.scores(np.arange(x.shape[1])).numpy()
    for i in range(x.shape[1]):
        for j in range(x.shape[1]):
            a, b = dense[:, i], dense[:, j]
            norm = np.linalg.norm(a) * np.linalg.norm(b)
            want = float(a @ b / norm) if norm else 0.0
            assert abs(got[i, j] - want) < 1e-5


def test_itemknn_scores_the_same_from_its_dense_matrix_and_from_the_sparse_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _matrix(3, items=30)
    dense = ItemKNN(x)
    monkeypatch.setattr(itemknn, "DENSE_MAX_ITEMS", 10)  # a catalog too large for it
    sparse = ItemKNN(x)
    assert dense.dense is not None and sparse.dense is None
    rows = np.array([4, 0, 29, 4])
    got = dense.scores(rows)
    assert torch.equal(got, sparse.scores(rows))  # the same arithmetic, element by element
    got[:] = -1.0  # a caller's edits stay its own
    assert torch.equal(dense.scores(rows), sparse.scores(rows))


def test_ease_matches_its_closed_form() -> None:
    x = _matrix(1)
    lam = 5.0
    dense = x.toarray().astype(np.float64)
    p = np.linalg.inv(dense.T @ dense + lam * np.eye(x.shape[1]))
    want = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(want, 0.0)
    model = EASE(gram(x), lam)
    np.testing.assert_allclose(model.scores(np.arange(x.shape[1])).numpy(), want, atol=1e-5)
    # B is the least-squares fit of X from X (zero diagonal): a larger lambda shrinks it.
    assert np.abs(EASE(gram(x), 500.0).weights.numpy()).sum() < np.abs(want).sum()


def test_neighbor_table_ranks_other_items_best_first() -> None:
    x = _matrix(2)
    knn = ItemKNN(x)
    ids, vals = neighbor_table(knn.scores, x.shape[1], k=5, block=4)
    full = knn.scores(np.arange(x.shape[1]))
    for i in range(x.shape[1]):
        assert i not in ids[i]
        assert (np.diff(vals[i]) <= 1e-7).all()
        row = full[i].clone()
        row[i] = -torch.inf
        np.testing.assert_allclose(np.sort(vals[i]), np.sort(row.topk(5).values.numpy()), atol=1e-6)
