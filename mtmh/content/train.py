"""Training the content encoder: symmetric InfoNCE between content and concept towers.

Each item is a positive pair (its content embedding, its concept embedding); the other items
of the batch are negatives in both directions (CLIP-style). A held-out share of items stops
training when its loss no longer falls, and the best epoch's weights are kept.

Fallback without concepts (ml-1m, or a user's table with no `concepts` column): the content
tower becomes one linear map fitted by PCA on the fusion input, so F is the text (and image)
embedding reduced to D dims with most of its variance, and still unit norm. It carries the
pre-trained encoder's semantics but none of a dataset-specific alignment.

Example:
    result = train_contrastive(features, concept_emb, cfg, seed=0)
    result.content(*features.tensors())  # [N, D] unit-norm teacher embeddings
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mtmh.config import ContentConfig
from mtmh.content.features import ItemFeatures
from mtmh.content.towers import ConceptTower, ContentTower

log = logging.getLogger(__name__)


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B, D] x [B, D] unit vectors, row i of each a positive pair -> scalar loss.

    Mean of the content->concept and concept->content cross-entropies over the B x B logits.
    """
    logits = a @ b.T / temperature  # [B, B]
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


@dataclass
class TrainingResult:
    content: ContentTower
    concept: ConceptTower | None
    kind: Literal["contrastive", "projection"]
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    note: str = ""  # why this kind was chosen


def _select(feats: ItemFeatures, idx: np.ndarray) -> list[torch.Tensor]:
    return [t[idx] for t in feats.tensors()]


def _eval_loss(
    content: ContentTower,
    concept: ConceptTower,
    inputs: list[torch.Tensor],
    concept_emb: torch.Tensor,
    cfg: ContentConfig,
) -> tuple[float, float]:
    """Mean loss over validation batches and content->concept top-1 accuracy within them."""
    content.eval(), concept.eval()
    losses, hits, n = [], 0, len(concept_emb)
    with torch.no_grad():
        for start in range(0, n, cfg.train.batch_size):
            sl = slice(start, start + cfg.train.batch_size)
            if len(concept_emb[sl]) < 2:
                continue
            a = content(*(t[sl] for t in inputs))
            b = concept(concept_emb[sl])
            losses.append(symmetric_info_nce(a, b, cfg.train.temperature).item() * len(a))
            hits += int((torch.argmax(a @ b.T, dim=1) == torch.arange(len(a))).sum())
    return sum(losses) / max(n, 1), hits / max(n, 1)


def _train_epoch(
    content: ContentTower,
    concept: ConceptTower,
    opt: torch.optim.Optimizer,
    inputs: list[torch.Tensor],
    concepts: torch.Tensor,
    perm: torch.Tensor,
    cfg: ContentConfig,
) -> float:
    """One pass over the items in `perm` order; the mean symmetric InfoNCE loss."""
    tc = cfg.train
    content.train(), concept.train()
    total, seen = 0.0, 0
    for start in range(0, len(perm), tc.batch_size):
        batch = perm[start : start + tc.batch_size]
        if len(batch) < 2:  # one item has no negatives
            continue
        loss = symmetric_info_nce(
            content(*(t[batch] for t in inputs)), concept(concepts[batch]), tc.temperature
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(batch)
        seen += len(batch)
    return total / max(seen, 1)


def train_contrastive(
    feats: ItemFeatures, concept_emb: np.ndarray, cfg: ContentConfig, seed: int = 0
) -> TrainingResult:
    """Train the fusion MLP and concept tower on items that all have concepts.

    feats: backbone features of N items; concept_emb: [N, Ht] pooled concept embeddings.
    """
    tc = cfg.train
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = len(concept_emb)
    order = torch.randperm(n, generator=gen).numpy()
    n_val = round(n * tc.val_fraction) if n >= 20 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    content = ContentTower(
        feats.text_emb.shape[1], feats.image_emb.shape[1], cfg.dim, tc.hidden_dim, tc.dropout
    )
    content.init_projection(*fit_pca(feats, cfg.dim))
    concept = ConceptTower(concept_emb.shape[1], cfg.dim, tc.hidden_dim, tc.dropout)
    params = [*content.parameters(), *concept.parameters()]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    concepts_t = torch.from_numpy(concept_emb)
    train_in, val_in = _select(feats, train_idx), _select(feats, val_idx)
    train_c, val_c = concepts_t[train_idx], concepts_t[val_idx]

    history: list[dict[str, float]] = []
    best = (float("inf"), 0)
    best_state = None
    for epoch in range(tc.epochs):
        perm = torch.randperm(len(train_idx), generator=gen)
        train_loss = _train_epoch(content, concept, opt, train_in, train_c, perm, cfg)
        row = {"epoch": float(epoch + 1), "train_loss": train_loss}
        if n_val:
            row["val_loss"], row["val_top1"] = _eval_loss(content, concept, val_in, val_c, cfg)
        history.append(row)
        score = row.get("val_loss", row["train_loss"])
        if score < best[0]:
            best = (score, epoch)
            best_state = (_snapshot(content), _snapshot(concept))
        if epoch % 10 == 0 or epoch == tc.epochs - 1:
            log.info("content encoder epoch %d: %s", epoch + 1, _fmt(row))
        if n_val and epoch - best[1] >= tc.patience:
            log.info("early stop at epoch %d (best %d)", epoch + 1, best[1] + 1)
            break
    if best_state is not None:
        content.load_state_dict(best_state[0])
        concept.load_state_dict(best_state[1])
    content.eval(), concept.eval()
    note = f"{n} items with concepts ({n_val} held out); best epoch {best[1] + 1}"
    return TrainingResult(content, concept, "contrastive", history, note)


def fit_pca(feats: ItemFeatures, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of the fusion input: ([D, in] weight, [D] bias) mapping x to its top-D components.

    Components beyond the input's rank are zero rows (their output is constant zero)."""
    x = ContentTower.fusion_input(*feats.tensors()).double()  # [N, in]
    mean = x.mean(dim=0)
    k = min(dim, x.shape[0], x.shape[1])
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh: [min(N, in), in]
    weight = torch.zeros(dim, x.shape[1], dtype=torch.float64)
    weight[:k] = vh[:k]
    return weight.float(), (-(mean @ weight.T)).float()


def fit_projection(feats: ItemFeatures, dim: int, note: str) -> TrainingResult:
    """The no-concepts fallback: the content tower is the PCA projection alone."""
    content = ContentTower(
        feats.text_emb.shape[1], feats.image_emb.shape[1], dim, kind="projection"
    )
    content.init_projection(*fit_pca(feats, dim))
    content.eval()
    return TrainingResult(content, None, "projection", [], note)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # state_dict() aliases the live parameters, which the optimizer keeps changing.
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fmt(row: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
