"""The item tower: SparseNN + DenseNN (+ content inputs for MoL/HLLM) -> shared bottom ->
one MLP head per embedding space, each ending in a unit vector of `dim`. A variant without
an MLP (ItemCF) is its id table alone: the id row, `dim` wide, normalised.

The same tower embeds triggers and candidates. Item features live in the tower as buffers
(not parameters, and not saved in checkpoints: they are rebuilt from the run directory), so a
batch is just item ids.

A prompted variant (dat) has one learnable prompt per cluster, as wide as the bottom's input.
`tower(ids, prompt=clusters)` multiplies each item's input features by its cluster's prompt
(Hadamard) before the shared bottom: the query side of retrieval within that cluster.
`tower(ids)` is the candidate side and never reads a prompt. Prompts start at one, so every
cluster's query starts as the plain embedding; they add K x input-width parameters.

Example:
    tables = ItemFeatureTables.from_arrays(dense, categorical, cards)
    tower = ItemTower(get_variant("mtmh"), tables, ModelConfig())
    out = tower(item_ids)  # {"engagement": [B, 128], "relevance": [B, 128]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtmh.config import ModelConfig
from mtmh.model.dense import DenseNN
from mtmh.model.sparse import SparseNN
from mtmh.model.variants import Variant


@dataclass
class ItemFeatureTables:
    """Per-item inputs, indexed by item id (rows 0..N-1)."""

    dense: np.ndarray  # [N, F] float32
    categorical: np.ndarray  # [N, C] int64
    cardinalities: Sequence[int]  # C entries
    content_features: np.ndarray | None = None  # [N, Hc] frozen backbone features (MoL)
    teacher: np.ndarray | None = None  # [N, D] content-encoder embeddings F (HLLM, and L_r)

    @property
    def num_items(self) -> int:
        return len(self.dense)


class ItemTower(nn.Module):
    # Buffers (declared for type checkers; registered in __init__).
    dense_table: torch.Tensor
    cat_table: torch.Tensor
    content_table: torch.Tensor

    def __init__(
        self,
        variant: Variant,
        tables: ItemFeatureTables,
        cfg: ModelConfig,
        num_prompts: int = 0,
    ) -> None:
        """num_prompts: the number of clusters of a prompted variant (0 otherwise)."""
        super().__init__()
        if variant.prompted != (num_prompts > 0):
            wanted = "one prompt per cluster" if variant.prompted else "no prompts"
            raise ValueError(f"variant {variant.name!r} takes {wanted}, got {num_prompts}")
        self.variant = variant
        side = "side" in variant.inputs
        n = self.num_items = tables.num_items
        id_dim = cfg.id_dim if variant.mlp else cfg.dim
        self.sparse = SparseNN(
            n, id_dim, tables.cardinalities if side else (), cfg.cat_dim, cfg.hash_buckets
        )
        self.dense = DenseNN(tables.dense.shape[1] if side else 0, cfg.dense_dim)
        self.register_buffer(
            "dense_table", torch.tensor(tables.dense, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "cat_table", torch.tensor(tables.categorical, dtype=torch.long), persistent=False
        )
        content = self._content_input(variant, tables)
        self.content_proj: nn.Module | None = None
        in_dim = self.sparse.out_dim + self.dense.out_dim
        if content is not None:
            self.register_buffer(
                "content_table", torch.tensor(content, dtype=torch.float32), persistent=False
            )
            self.content_proj = nn.Sequential(nn.Linear(content.shape[1], cfg.dense_dim), nn.ReLU())
            in_dim += cfg.dense_dim
        self.prompts: nn.Parameter | None = None
        if num_prompts:
            self.prompts = nn.Parameter(torch.ones(num_prompts, in_dim))
        h = cfg.hidden_dim
        self.bottom: nn.Module = nn.Identity()
        self.heads = nn.ModuleDict({name: nn.Identity() for name in variant.heads})
        if variant.mlp:
            self.bottom = nn.Sequential(nn.Linear(in_dim, h), nn.ReLU())
            self.heads = nn.ModuleDict(
                {
                    name: nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.dim))
                    for name in variant.heads
                }
            )
        elif variant.inputs != ("id",):
            raise ValueError(f"variant {variant.name!r}: only an id-only variant can skip the MLP")

    @staticmethod
    def _content_input(variant: Variant, tables: ItemFeatureTables) -> np.ndarray | None:
        if "content_features" in variant.inputs:
            if tables.content_features is None:
                raise ValueError(f"variant {variant.name!r} needs content features")
            return tables.content_features
        if "teacher" in variant.inputs:
            if tables.teacher is None:
                raise ValueError(f"variant {variant.name!r} needs the content embeddings")
            return tables.teacher
        return None

    @property
    def num_prompts(self) -> int:
        return 0 if self.prompts is None else len(self.prompts)

    def bottom_output(
        self, item_ids: torch.Tensor, prompt: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B] ids (and [B] cluster ids to prompt with) -> [B, hidden] shared representation."""
        ids = item_ids.long()
        parts = [self.sparse(ids, self.cat_table[ids]), self.dense(self.dense_table[ids])]
        if self.content_proj is not None:
            parts.append(self.content_proj(self.content_table[ids]))
        x = torch.cat(parts, dim=-1)
        if prompt is not None:
            if self.prompts is None:
                raise ValueError(f"variant {self.variant.name!r} has no prompts")
            x = x * self.prompts[prompt.long()]
        return self.bottom(x)

    def forward(
        self, item_ids: torch.Tensor, prompt: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """[B] ids -> {head: [B, dim] unit-norm embedding}; with `prompt` ([B] cluster ids),
        the prompted query embeddings of a prompted variant."""
        shared = self.bottom_output(item_ids, prompt)
        return {name: F.normalize(head(shared), dim=-1) for name, head in self.heads.items()}
