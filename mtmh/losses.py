"""MTMH's losses (spec section 3): co-engagement InfoNCE, KL distillation, the multi-task sum.

Candidate set. For a batch of B (trigger i, positive j) pairs plus L random negatives shared
by the batch (mixed negative sampling, Yang et al. 2020), row i scores B + L candidates: the
B in-batch positives (its own at column i, the others as negatives) and the L random ones.

- logQ correction: in-batch candidates arrive in proportion to their popularity and random
  negatives in proportion to the random sampler. Each candidate's logit is reduced by the log
  of its sampling probability, so popular items are not punished for being sampled often
  (Yi et al. 2019). The caller passes `log_q` per candidate column.
- Accidental hits: a column holding the same item as row i's positive, other than column i
  itself, is masked out. It is not a negative. Nor is a column holding row i's trigger:
  an item is trivially closest to itself, and retrieval never returns the trigger.

The distillation loss uses the same candidates and masks. `P` is the softmax of the raw
student logits (no logQ: it compares similarity structures, not sampled probabilities), and
`Q` is the softmax of teacher logits from the frozen content embeddings. The loss is
KL(Q || P), per row.

A caller may mask more columns per row (`CandidateSet.build(..., foreign=...)`): divide and
conquer's in-cluster hard negatives are shared columns that count only for the rows of their
own cluster.

Shapes: anchors, positives [B, D]; negatives [L, D]; ids [B] and [L]; log_q [B + L].

Example:
    cands = CandidateSet.build(pos_ids, neg_ids, log_q)
    s = candidate_logits(trigger_emb, pos_emb, neg_emb, temperature)
    t = candidate_logits(trigger_f, pos_f, neg_f, teacher_temperature)  # content embeddings
    loss = multi_task(info_nce(s, cands), kl_distillation(s, t, cands), w_r=0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NEG_INF = -1e9  # a large finite negative: keeps softmax and KL free of NaN on masked columns


@dataclass(frozen=True)
class CandidateSet:
    """Which item sits in each candidate column, its log sampling probability, and the mask."""

    ids: torch.Tensor  # [B + L] item id per column
    log_q: torch.Tensor  # [B + L] log sampling probability per column
    invalid: torch.Tensor  # [B, B + L] bool: True where the column is no candidate of the row

    @property
    def valid(self) -> torch.Tensor:
        return ~self.invalid

    @classmethod
    def build(
        cls,
        pos_ids: torch.Tensor,
        neg_ids: torch.Tensor,
        log_q: torch.Tensor | None = None,
        trigger_ids: torch.Tensor | None = None,
        foreign: torch.Tensor | None = None,
    ) -> CandidateSet:
        """foreign: [B, B + L] bool, more columns that are no candidates of a row."""
        ids = torch.cat([pos_ids, neg_ids])
        b = len(pos_ids)
        same_item = pos_ids.unsqueeze(1) == ids.unsqueeze(0)  # [B, B + L]
        if trigger_ids is not None:
            same_item |= trigger_ids.unsqueeze(1) == ids.unsqueeze(0)
        same_item[torch.arange(b), torch.arange(b)] = False  # a row's own positive
        if foreign is not None:
            same_item |= foreign
        if log_q is None:
            log_q = torch.zeros(len(ids), device=ids.device)
        return cls(ids, log_q, same_item)


def candidate_logits(
    anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """[B, D], [B, D], [L, D] -> [B, B + L] inner products / temperature (the temperature
    divides the [B, D] anchors, not the larger [B, B + L] product)."""
    return (anchors / temperature) @ torch.cat([positives, negatives]).T


def weighted_mean(per_row: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """[B] -> scalar: the plain mean, or the `weights`-weighted mean (SIM pair weights)."""
    if weights is None:
        return per_row.mean()
    return (per_row * weights).sum() / weights.sum()


def info_nce(
    logits: torch.Tensor,
    cands: CandidateSet,
    log_q_correction: bool = True,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 1, (weighted) mean over rows: -log softmax(logits - log_q)[i, i] with accidental
    hits masked. `weights` [B] weigh each positive pair (None: all equal)."""
    if log_q_correction:  # a new tensor, so the mask can go in place
        logits = (logits - cands.log_q.unsqueeze(0)).masked_fill_(cands.invalid, NEG_INF)
    else:
        logits = logits.masked_fill(cands.invalid, NEG_INF)
    target = torch.arange(len(logits), device=logits.device)
    return weighted_mean(F.cross_entropy(logits, target, reduction="none"), weights)


def kl_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    cands: CandidateSet,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 2, (weighted) mean over rows: KL(softmax(teacher) || softmax(student)) over valid
    columns. A masked column's teacher probability is exactly 0 (exp of about -1e9), so it
    adds nothing to the sum."""
    log_p = F.log_softmax(student_logits.masked_fill(cands.invalid, NEG_INF), dim=1)
    log_q = F.log_softmax(teacher_logits.masked_fill(cands.invalid, NEG_INF), dim=1)
    kl = F.kl_div(log_p, log_q, reduction="none", log_target=True)  # q * (log q - log p)
    return weighted_mean(kl.sum(dim=1), weights)


def multi_task(l_e: torch.Tensor, l_r: torch.Tensor, w_r: float) -> torch.Tensor:
    """Eq. 3: L_mt = L_e + w_r * L_r."""
    return l_e + w_r * l_r
