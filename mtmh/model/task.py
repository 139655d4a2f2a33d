"""The training task: the item tower wrapped with the losses of its variant.

Per batch of (trigger, target) pairs, plus L random negatives shared by the batch, and for
each head h with objective
    "e":  L_e(h)                       co-engagement InfoNCE with logQ and hit masking
    "mt": L_e(h) + w_r * L_r(h)        L_r = KL(teacher || student) on the same candidates
    "r":  L_r(h)
the total loss is the sum over heads. Heads share the bottom, so the bottom learns from every
head's loss; a head's own parameters see only its own objective (the engagement head of MTMH
gets no gradient from L_r).

Pair weights (spec section 2, SIM-style): with `model.pair_weighting=sim`, a pair whose two
items are close in the teacher's content space weighs more in every loss:
`w_ij = 1 + sim_strength * max(0, <F_i, F_j>)`. The weights shape which co-engagements count
most; the content never becomes a model input.

The tower runs once per distinct item of the batch (triggers, positives and negatives share
many items on small catalogs), and the rows are gathered back.

A prompted variant (dat, divide and conquer) scores each pair from the query side: the tower
on the trigger prompted with the target's cluster. Its candidates are the same in-batch and
random ones plus H hard negatives from the target's cluster (`ClusterNegatives`: H per
cluster, shared by the batch's rows of that cluster), each kind with its own logQ
correction. Candidates are always embedded without a prompt.

Example:
    task = RetrievalTask(tower, cfg, MixedNegatives(log_p, 256, 0), teacher=teacher_emb)
    losses = task(trigger_ids, target_ids, negative_ids)  # {"loss": .., "engagement/l_e": ..}
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtmh.config import ModelConfig
from mtmh.errors import ArtifactError
from mtmh.losses import CandidateSet, candidate_logits, info_nce, kl_distillation, multi_task
from mtmh.model.negatives import ClusterNegatives, MixedNegatives
from mtmh.model.tower import ItemTower


class RetrievalTask(nn.Module):
    teacher: torch.Tensor  # buffer, registered in __init__

    def __init__(
        self,
        tower: ItemTower,
        cfg: ModelConfig,
        negatives: MixedNegatives,
        teacher: np.ndarray | None = None,
        cluster_negatives: ClusterNegatives | None = None,
    ) -> None:
        """negatives: the sampler whose log_q corrects the logits (its popularity is the
        training pairs' target distribution); teacher: [N, D] content embeddings F (needed
        by "mt"/"r" heads and by SIM pair weights); cluster_negatives: the in-cluster hard
        negatives of a prompted variant (its clusters are its prompts')."""
        super().__init__()
        self.tower = tower
        self.cfg = cfg
        variant = tower.variant
        if variant.needs_teacher_logits and teacher is None:
            raise ArtifactError(f"variant {variant.name!r} needs teacher embeddings for L_r")
        if variant.prompted:
            if cluster_negatives is None:
                raise ValueError(f"variant {variant.name!r} trains with in-cluster negatives")
            if cluster_negatives.num_clusters != tower.num_prompts:
                raise ValueError(
                    f"{cluster_negatives.num_clusters} clusters for {tower.num_prompts} prompts"
                )
            if variant.needs_teacher_logits:
                raise ValueError(f"variant {variant.name!r}: a prompted head distills nothing")
        self.cluster_negatives = cluster_negatives
        if cfg.pair_weighting == "sim" and teacher is None:
            raise ArtifactError("model.pair_weighting=sim needs the teacher embeddings (content/)")
        n = tower.num_items
        self.register_buffer(
            "teacher",
            torch.tensor(teacher, dtype=torch.float32) if teacher is not None else torch.zeros(0),
            persistent=False,
        )
        if negatives.num_items != n:
            raise ValueError(
                f"the negative sampler covers {negatives.num_items} items, the tower {n}"
            )
        self.negatives = negatives

    def pair_weights(
        self, trigger_ids: torch.Tensor, target_ids: torch.Tensor
    ) -> torch.Tensor | None:
        """[B] SIM-style weights of the positive pairs (None when weighting is off)."""
        if self.cfg.pair_weighting != "sim":
            return None
        cos = (self.teacher[trigger_ids.long()] * self.teacher[target_ids.long()]).sum(dim=1)
        return 1.0 + self.cfg.sim_strength * cos.clamp(min=0.0)

    def embed(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """{head: [len(ids), D]}, running the tower once per distinct id."""
        unique, inverse = torch.unique(ids, return_inverse=True)
        return {head: e[inverse] for head, e in self.tower(unique).items()}

    def _prompted(
        self,
        trigger_ids: torch.Tensor,
        target_ids: torch.Tensor,
        negative_ids: torch.Tensor,
        log_q: torch.Tensor,
        cluster_negative_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """A prompted variant's negatives with the in-cluster ones appended, their log_q, the
        mask of other clusters' draws ([B, B + L + K * H]) and the prompted queries."""
        hard = self.cluster_negatives
        assert hard is not None
        if cluster_negative_ids is None:
            raise ValueError("a prompted variant needs its in-cluster negatives per batch")
        clusters = hard.cluster_of(target_ids)
        b, shared = len(target_ids), len(target_ids) + len(negative_ids)
        own = torch.zeros((b, shared), dtype=torch.bool, device=log_q.device)
        return (
            torch.cat([negative_ids, cluster_negative_ids]),
            torch.cat([log_q, hard.log_q(log_q.device)]),
            torch.cat([own, hard.foreign(clusters)], dim=1),
            self.tower(trigger_ids, prompt=clusters),
        )

    def forward(
        self,
        trigger_ids: torch.Tensor,
        target_ids: torch.Tensor,
        negative_ids: torch.Tensor,
        pair_weights: torch.Tensor | None = None,
        cluster_negative_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """pair_weights: [B] per-pair weights from the data (counts of deduplicated pairs),
        multiplied with the SIM weights; cluster_negative_ids: [K * H] hard negatives of a
        prompted variant (`ClusterNegatives.sample`)."""
        cfg = self.cfg
        b = len(trigger_ids)
        log_q = self.negatives.log_q(target_ids, len(negative_ids))
        foreign, queries = None, None
        if self.cluster_negatives is not None:
            negative_ids, log_q, foreign, queries = self._prompted(
                trigger_ids, target_ids, negative_ids, log_q, cluster_negative_ids
            )
        ids = torch.cat([trigger_ids, target_ids, negative_ids])
        emb = self.embed(ids)  # one forward for triggers, positives and negatives
        cands = CandidateSet.build(target_ids, negative_ids, log_q, trigger_ids, foreign)
        weights = self.pair_weights(trigger_ids, target_ids)
        if pair_weights is not None:
            pair_weights = pair_weights.float()
            weights = pair_weights if weights is None else weights * pair_weights
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
            anchors = e[:b] if queries is None else queries[head]
            s = candidate_logits(anchors, e[b : 2 * b], e[2 * b :], cfg.temperature)
            l_e = info_nce(s, cands, cfg.log_q_correction, weights)
            out[f"{head}/l_e"] = l_e.detach()
            if objective == "e":
                loss = l_e
            else:
                assert teacher_logits is not None
                l_r = kl_distillation(s, teacher_logits, cands, weights)
                out[f"{head}/l_r"] = l_r.detach()
                loss = multi_task(l_e, l_r, cfg.w_r) if objective == "mt" else l_r
            out[f"{head}/loss"] = loss.detach()
            total = total + loss
        out["loss"] = total
        return out
