"""The preranker: a two-task scorer of (user, trigger, candidate) rows (spec section 6).

    x [R, F] features (mtmh/preranker/features.py), standardised with the training mean/std
    engagement logit   = w_e . z + b_e + mlp(z)[0]    will the user engage with the candidate?
    satisfaction logit = w_s . z + b_s + mlp(z)[1]    ... and be satisfied (rating >= 4)?
    probability        = p(engage) * p(satisfied | engage) ** satisfaction_weight

The linear part starts as the list's own similarity (`own_sim`) and the MLP's last layer starts
at zero, so an untrained preranker ranks each trigger's candidates in ANN order: the learned
part is a correction on top of it. Scores are probabilities, so a user's pool adds them up
over the triggers that kept an item (the expected number of triggers it pleases).

Example:
    model = PrerankerModel(num_features=16, hidden_dim=64, satisfaction_weight=1.0)
    p = model.probability(torch.randn(5, 16))   # [5] in (0, 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OWN_SIM = 0  # column of the list's own similarity (feature_names()[0])


class PrerankerModel(nn.Module):
    mean: torch.Tensor  # [F] buffers: the training rows' feature mean and std
    std: torch.Tensor
    has_satisfaction: torch.Tensor  # [] bool buffer

    def __init__(
        self, num_features: int, hidden_dim: int, satisfaction_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.hidden_dim = hidden_dim
        self.satisfaction_weight = satisfaction_weight
        # Standardisation of the inputs, set from the training rows (`set_scaling`).
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        # Whether the satisfaction task was learned (the log has ratings on both sides of
        # the threshold); without it the probability is p(engage) alone.
        self.register_buffer("has_satisfaction", torch.tensor(False))
        self.linear = nn.Linear(num_features, 2)
        self.mlp = nn.Sequential(
            nn.Linear(num_features, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2)
        )
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, OWN_SIM] = 1.0  # ANN order at initialisation
            self.linear.bias.zero_()
            last = self.mlp[-1]
            assert isinstance(last, nn.Linear)
            last.weight.zero_()
            last.bias.zero_()

    def set_scaling(self, x: torch.Tensor, engage_rate: float) -> None:
        """Standardise with the rows' mean and std; start the engagement bias at the base rate."""
        with torch.no_grad():
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0).clamp(min=1e-6))
            rate = min(max(engage_rate, 1e-6), 1 - 1e-6)
            self.linear.bias[0] = float(torch.logit(torch.tensor(rate)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[R, F] features -> [R, 2] logits (engagement, satisfaction)."""
        z = (x - self.mean) / self.std
        return self.linear(z) + self.mlp(z)

    def log_probability(self, x: torch.Tensor) -> torch.Tensor:
        """[R] log p(engage) + w log p(satisfied | engage)."""
        logits = self(x)
        out = F.logsigmoid(logits[:, 0])
        if bool(self.has_satisfaction) and self.satisfaction_weight > 0:
            out = out + self.satisfaction_weight * F.logsigmoid(logits[:, 1])
        return out

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_probability(x).exp()

    def losses(
        self, x: torch.Tensor, engaged: torch.Tensor, satisfied: torch.Tensor, weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Weighted binary cross-entropy of engagement over all rows, and of satisfaction
        over the engaged rows (p(satisfied | engage)); `weight` undoes negative sampling."""
        logits = self(x)
        l_eng = (
            F.binary_cross_entropy_with_logits(
                logits[:, 0], engaged, weight=weight, reduction="sum"
            )
            / weight.sum()
        )
        pos = engaged > 0
        if bool(self.has_satisfaction) and bool(pos.any()):
            l_sat = F.binary_cross_entropy_with_logits(logits[pos, 1], satisfied[pos])
        else:
            l_sat = logits.new_zeros(())
        return {"engagement": l_eng, "satisfaction": l_sat, "loss": l_eng + l_sat}
