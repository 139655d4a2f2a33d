"""DenseNN: float features of an item -> an MLP latent vector."""

from __future__ import annotations

import torch
from torch import nn


class DenseNN(nn.Module):
    """[B, F] float features -> [B, out_dim] (an empty [B, 0] when F is 0)."""

    def __init__(self, in_dim: int, out_dim: int = 32) -> None:
        super().__init__()
        self.out_dim = out_dim if in_dim > 0 else 0
        self.net: nn.Module = (
            nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU()) if in_dim > 0 else nn.Identity()
        )

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        if self.out_dim == 0:
            return dense.new_zeros(len(dense), 0)
        return self.net(dense)
