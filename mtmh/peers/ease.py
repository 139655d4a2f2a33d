"""EASE (Steck 2019): a closed-form item-item linear model, the strongest classic baseline
on MovieLens-sized catalogs.

    G = X^T X + lambda I,   P = G^-1,   B = -P / diag(P) (column-wise),   diag(B) = 0

B[i, j] is how much engaging with item i predicts item j. The cost is one dense N x N
inverse: O(N^3) time and N^2 memory, so EASE is fitted only up to `peers.ease_max_items`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def gram(x: sp.csr_matrix) -> np.ndarray:
    """[N, N] float64 X^T X."""
    return np.asarray((x.T @ x).toarray(), dtype=np.float64)


class EASE:
    name = "EASE"

    def __init__(self, g: np.ndarray, lam: float) -> None:
        """g: [N, N] Gram matrix X^T X (not modified); lam: the L2 weight lambda."""
        p = g.copy()
        p[np.diag_indices_from(p)] += lam
        p = np.linalg.inv(p)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights = torch.from_numpy(b.astype(np.float32))  # [N, N]
        self.lam = lam
        self.num_items = len(g)

    def scores(self, items: np.ndarray) -> torch.Tensor:
        """[T, N] rows of B: each trigger's contribution to every item's score."""
        return self.weights[torch.as_tensor(np.asarray(items, np.int64))]
