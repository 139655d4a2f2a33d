"""ItemKNN: cosine similarity between items' columns of the user-item matrix (Sarwar et al.
2001), the item-based CF that practitioners reach for first.

    sim(i, j) = <x_i, x_j> / (|x_i| |x_j|),  x_i = the users who engaged with item i

Up to DENSE_MAX_ITEMS items, the whole [N, N] similarity is computed once and scores are
rows of it. Above that, they are computed for the asked rows from the sparse matrix, so
memory stays at [rows, N] whatever the catalog size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

# At most 256 MiB of float32. The validation pass asks for one user's triggers at a time, and
# a sparse product per call costs far more than the whole matrix made once in blocks.
DENSE_MAX_ITEMS = 8192
BLOCK = 1024  # rows per sparse product while the dense matrix is filled


class ItemKNN:
    name = "ItemKNN"

    def __init__(self, x: sp.csr_matrix) -> None:
        """x: [U, N] binary user-item matrix."""
        self.xt = sp.csr_matrix(x.T)  # [N, U]
        self.x = sp.csc_matrix(x)
        norms = np.sqrt(np.asarray(self.xt.multiply(self.xt).sum(axis=1)).ravel())
        self.inv_norm = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        self.num_items = n = x.shape[1]
        self.dense: np.ndarray | None = None
        if n <= DENSE_MAX_ITEMS:
            self.dense = np.empty((n, n), np.float32)
            for start in range(0, n, BLOCK):
                rows = np.arange(start, min(n, start + BLOCK))
                self.dense[rows] = self._similarity(rows)

    def scores(self, items: np.ndarray) -> torch.Tensor:
        """[T, N] cosine similarity of each item in `items` to every item (self included)."""
        items = np.asarray(items, np.int64)
        if self.dense is not None:
            return torch.from_numpy(self.dense[items])  # a copy: callers may write to it
        return torch.from_numpy(self._similarity(items))

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        co = (self.xt[items] @ self.x).toarray().astype(np.float32)  # [T, N] co-counts
        co *= self.inv_norm[items, None] * self.inv_norm[None, :]
        return co
