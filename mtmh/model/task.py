"""The training task: the item tower wrapped with the losses of its variant.

Per batch of (trigger, target) pairs, plus L random negatives shared by the batch, and for
each head h with objective
    "e":  L_e(h)                       co-engagement InfoNCE with logQ and hit masking
    "mt": L_e(h) + w_r * L_r(h)        L_r = KL(teacher || student) on the same candidates
    "r":  L_r(h)
the total loss is the sum over heads. Heads share the bottom, so the bottom learns from every
head's loss; a head's own parameters see only its own objective (the engagement head of MTMH
gets no gradient from L_r).

Example:
    task = RetrievalTask(tower, cfg, teacher=teacher_emb, log_popularity=log_p)
    losses = task(trigger_ids, target_ids, negative_ids)  # {"loss": .., "engagement/l_e": ..}
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mtmh.config import ModelConfig
from mtmh.losses import CandidateSet, candidate_logits, info_nce, kl_distillation, multi_task
from mtmh.model.tower import ItemTower


class RetrievalTask(nn.Module):
    teacher: torch.Tensor  # buffers, registered in __init__
    log_popularity: torch.Tensor

    def __init__(
        self,
        tower: ItemTower,
        cfg: ModelConfig,
        teacher: np.ndarray | None = None,
        log_popularity: np.ndarray | None = None,
    ) -> None:
        """teacher: [N, D] content embeddings F (needed by "mt"/"r" heads);
        log_popularity: [N] log of each item's share of positives, for the logQ correction."""
        super().__init__()
        self.tower = tower
        self.cfg = cfg
        if tower.variant.needs_teacher_logits and teacher is None:
            raise ValueError(f"variant {tower.variant.name!r} needs teacher embeddings for L_r")
        n = tower.num_items
        self.register_buffer(
            "teacher",
            torch.tensor(teacher, dtype=torch.float32) if teacher is not None else torch.zeros(0),
            persistent=False,
        )
        log_p = log_popularity if log_popularity is not None else np.full(n, -math.log(n))
        self.register_buffer(
            "log_popularity", torch.tensor(log_p, dtype=torch.float32), persistent=False
        )

    def log_q(self, pos_ids: torch.Tensor, num_negatives: int) -> torch.Tensor:
        """[B + L] log sampling probability of each candidate column.

        In-batch candidates are drawn with the positives, so in proportion to popularity: one
        batch of B holds item j with probability about B * p_j. Random negatives are uniform
        over the catalog: L / N each."""
        n = self.log_popularity.shape[0]
        in_batch = self.log_popularity[pos_ids.long()] + math.log(len(pos_ids))
        uniform = torch.full((num_negatives,), math.log(max(num_negatives, 1) / n))
        return torch.cat([in_batch, uniform.to(in_batch.device)])

    def forward(
        self, trigger_ids: torch.Tensor, target_ids: torch.Tensor, negative_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        b = len(trigger_ids)
        ids = torch.cat([trigger_ids, target_ids, negative_ids])
        emb = self.tower(ids)  # one forward for triggers, positives and negatives
        cands = CandidateSet.build(
            target_ids, negative_ids, self.log_q(target_ids, len(negative_ids)), trigger_ids
        )
        teacher_logits = None
        if self.tower.variant.needs_teacher_logits:
            f = self.teacher[ids.long()]
            teacher_logits = candidate_logits(
                f[:b], f[b : 2 * b], f[2 * b :], cfg.teacher_temperature
            )
        out: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=emb[next(iter(emb))].device)
        for head, objective in self.tower.variant.heads.items():
            e = emb[head]
            s = candidate_logits(e[:b], e[b : 2 * b], e[2 * b :], cfg.temperature)
            l_e = info_nce(s, cands, cfg.log_q_correction)
            out[f"{head}/l_e"] = l_e.detach()
            if objective == "e":
                loss = l_e
            else:
                assert teacher_logits is not None
                l_r = kl_distillation(s, teacher_logits, cands)
                out[f"{head}/l_r"] = l_r.detach()
                loss = multi_task(l_e, l_r, cfg.w_r) if objective == "mt" else l_r
            out[f"{head}/loss"] = loss.detach()
            total = total + loss
        out["loss"] = total
        return out
