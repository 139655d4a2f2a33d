"""The trainable parts of the content encoder: the fusion MLP and the concept tower.

Both sit on frozen backbone features (mtmh/content/features.py) and end in a D-dim unit
vector. Only the content tower's output is the teacher F; the concept tower exists to train it
and is kept in the checkpoint for inspection.

    content: x = [text_emb*tm, image_emb*im, tm, im] -> P x + MLP(x) -> [B, D]
             (kind "projection": P x alone)
    concept: mean of the item's concept-string embeddings -> MLP -> [B, D]
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

FusionKind = Literal["mlp", "projection"]


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, out_dim),
    )


class ContentTower(nn.Module):
    """Fuses text and image embeddings (with presence masks) into one unit-norm vector.

    P is a linear map initialised by PCA on the fusion input (`init_projection`), and the MLP
    is a residual whose last layer starts at zero. So the untrained tower already is the
    PCA fallback, and contrastive training (kind "mlp") moves it only as far as held-out
    concept alignment rewards: on data whose content barely predicts its concepts, early
    stopping leaves it near the pre-trained encoder's geometry instead of at a random map.
    Kind "projection" is P alone, for datasets without concepts.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        dim: int = 128,
        hidden_dim: int = 512,
        dropout: float = 0.1,
        kind: FusionKind = "mlp",
    ) -> None:
        super().__init__()
        self.in_dim = text_dim + image_dim + 2  # + the two presence masks
        self.kind = kind
        self.proj = nn.Linear(self.in_dim, dim)
        self.residual: nn.Sequential | None = None
        if kind == "mlp":
            self.residual = _mlp(self.in_dim, hidden_dim, dim, dropout)
            last = self.residual[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @torch.no_grad()
    def init_projection(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set P to a fitted [D, in] weight and [D] bias (see train.fit_pca)."""
        self.proj.weight.copy_(weight)
        self.proj.bias.copy_(bias)

    @staticmethod
    def fusion_input(
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        image_emb: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """[B, Ht], [B], [B, Hi], [B] -> [B, Ht + Hi + 2]; absent parts are zeroed."""
        tm, im = text_mask.unsqueeze(-1), image_mask.unsqueeze(-1)
        return torch.cat([text_emb * tm, image_emb * im, tm, im], dim=-1)

    def pretrained_features(
        self,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        image_emb: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """[B, D] unit-norm P x: the pre-trained backbones' view of the item, reduced by PCA
        but untouched by concept training (the MoL baseline's content input)."""
        x = self.fusion_input(text_emb, text_mask, image_emb, image_mask)
        return F.normalize(self.proj(x), dim=-1)

    def forward(
        self,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        image_emb: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        x = self.fusion_input(text_emb, text_mask, image_emb, image_mask)
        out = self.proj(x)
        if self.residual is not None:
            out = out + self.residual(x)
        return F.normalize(out, dim=-1)  # [B, D]


class ConceptTower(nn.Module):
    """Maps an item's pooled concept-string embedding [B, Ht] to a unit vector [B, D]."""

    def __init__(self, text_dim: int, dim: int = 128, hidden_dim: int = 512, dropout: float = 0.1):
        super().__init__()
        self.net = _mlp(text_dim, hidden_dim, dim, dropout)

    def forward(self, concept_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(concept_emb), dim=-1)
