"""ItemKNN: cosine similarity between items' columns of the user-item matrix (Sarwar et al.
2001), the item-based CF that practitioners reach for first.

    sim(i, j) = <x_i, x_j> / (|x_i| |x_j|),  x_i = the users who engaged with item i

Scores are computed a block of rows at a time from the sparse matrix, so memory stays at
[block, N] whatever the catalog size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class ItemKNN:
    name = "ItemKNN"

    def __init__(self, x: sp.csr_matrix) -> None:
        """x: [U, N] binary user-item matrix."""
        self.xt = sp.csr_matrix(x.T)  # [N, U]
        self.x = sp.csc_matrix(x)
        norms = np.sqrt(np.asarray(self.xt.multiply(self.xt).sum(axis=1)).ravel())
        self.inv_norm = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        self.num_items = x.shape[1]

    def scores(self, items: np.ndarray) -> torch.Tensor:
        """[T, N] cosine similarity of each item in `items` to every item (self included)."""
        items = np.asarray(items, np.int64)
        co = (self.xt[items] @ self.x).toarray().astype(np.float32)  # [T, N] co-counts
        co *= self.inv_norm[items, None] * self.inv_norm[None, :]
        return torch.from_numpy(co)
