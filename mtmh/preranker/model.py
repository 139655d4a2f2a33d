"""The preranker: a two-task user-to-item model (spec section 6).

- User encoder: the user's last H items (id embeddings plus a learned position embedding),
  mean-pooled and joined with the most recent item, through an MLP to a user vector for each
  task.
- Item side: per task an item vector and a bias (the bias carries popularity, which a
  preranker, unlike the retrieval tower, should keep).
- Tasks: engagement (which item comes next: softmax over in-batch items) and satisfaction
  (was the engagement satisfied, e.g. rating >= 4: a sigmoid).
- One score: engagement logit + satisfaction_weight * log sigmoid(satisfaction logit), i.e.
  log p(engage) + w · log p(satisfied | engage) up to a per-user constant.

Both tasks are dot products, so scoring thousands of candidates per trigger is two batched
matrix products, which is what a preranker has to be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtmh.config import PrerankerConfig


class PrerankerModel(nn.Module):
    def __init__(self, num_items: int, cfg: PrerankerConfig) -> None:
        super().__init__()
        self.num_items = num_items
        self.cfg = cfg
        d = cfg.dim
        # Row `num_items` is the padding row (history slots with no item).
        self.history_emb = nn.Embedding(num_items + 1, d, padding_idx=num_items)
        self.position = nn.Parameter(torch.zeros(cfg.history_length, d))
        self.user_mlp = nn.Sequential(
            nn.Linear(2 * d, cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, 2 * d)
        )
        self.item_emb = nn.Embedding(num_items, 2 * d)  # [engagement | satisfaction]
        self.item_bias = nn.Embedding(num_items, 2)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.history_emb.weight, std=0.05)
        nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """[B, H] item ids (-1 = empty slot) -> [B, 2*dim] (engagement | satisfaction)."""
        mask = (history >= 0).unsqueeze(-1).float()
        idx = torch.where(history >= 0, history, torch.full_like(history, self.num_items))
        emb = (self.history_emb(idx) + self.position) * mask
        mean = emb.sum(1) / mask.sum(1).clamp(min=1.0)
        return self.user_mlp(torch.cat([mean, emb[:, -1]], dim=-1))

    def task_logits(
        self, user: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """user [B, 2d], items [B, C] -> (engagement, satisfaction) logits, each [B, C]."""
        d = self.cfg.dim
        vec = self.item_emb(items)
        bias = self.item_bias(items)
        eng = torch.einsum("bd,bcd->bc", user[:, :d], vec[..., :d]) / self.cfg.temperature
        sat = torch.einsum("bd,bcd->bc", user[:, d:], vec[..., d:])
        return eng + bias[..., 0], sat + bias[..., 1]

    def score(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The combined preranker score of each candidate, [B, C]."""
        eng, sat = self.task_logits(user, items)
        return eng + self.cfg.satisfaction_weight * F.logsigmoid(sat)

    def forward(
        self, history: torch.Tensor, target: torch.Tensor, satisfied: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Training losses (what DDP calls); see `losses`."""
        return self.losses(history, target, satisfied)

    def losses(
        self, history: torch.Tensor, target: torch.Tensor, satisfied: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Engagement: in-batch softmax (other rows' targets are the negatives, accidental
        hits masked); satisfaction: binary cross-entropy on the positive."""
        d = self.cfg.dim
        user = self.user_vectors(history)
        vec, bias = self.item_emb(target), self.item_bias(target)
        eng = user[:, :d] @ vec[:, :d].T / self.cfg.temperature + bias[:, 0]
        same = target.unsqueeze(0) == target.unsqueeze(1)
        same.fill_diagonal_(False)
        eng = eng.masked_fill(same, float("-inf"))
        labels = torch.arange(len(target), device=target.device)
        l_eng = F.cross_entropy(eng, labels)
        sat = (user[:, d:] * vec[:, d:]).sum(-1) + bias[:, 1]
        l_sat = F.binary_cross_entropy_with_logits(sat, satisfied)
        return {"engagement": l_eng, "satisfaction": l_sat, "loss": l_eng + l_sat}
