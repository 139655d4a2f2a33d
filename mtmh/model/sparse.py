"""SparseNN: ID features of an item (its id, its categorical side features) -> embeddings.

Catalogs too large for one id table hash ids into `hash_buckets` rows (a multiplicative hash,
so neighbouring ids spread out); collisions are the price of a bounded table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_HASH_MULTIPLIER = 2_654_435_761  # Knuth's multiplicative hash constant
INIT_STD = 0.05  # initial scale of every embedding table


class SparseNN(nn.Module):
    """[B] item ids and [B, C] categorical codes -> [B, id_dim + C * cat_dim]."""

    def __init__(
        self,
        num_items: int,
        id_dim: int,
        categorical_cardinalities: Sequence[int] = (),
        cat_dim: int = 16,
        hash_buckets: int | None = None,
    ) -> None:
        super().__init__()
        self.hash_buckets = hash_buckets
        rows = hash_buckets if hash_buckets is not None else num_items
        self.id_table = nn.Embedding(rows, id_dim)
        self.cat_tables = nn.ModuleList(
            nn.Embedding(card, cat_dim) for card in categorical_cardinalities
        )
        # Every table starts at the same small scale. With PyTorch's N(0, 1) default, the few
        # side-feature rows (decade, ...) dwarf the id rows at std 0.05, and at the start items
        # cluster by year rather than by id.
        for table in (self.id_table, *self.cat_tables):
            nn.init.normal_(table.weight, std=INIT_STD)
        self.out_dim = id_dim + cat_dim * len(categorical_cardinalities)

    def id_rows(self, item_ids: torch.Tensor) -> torch.Tensor:
        if self.hash_buckets is None:
            return item_ids
        return (item_ids.long() * _HASH_MULTIPLIER) % self.hash_buckets

    def forward(
        self, item_ids: torch.Tensor, categorical: torch.Tensor | None = None
    ) -> torch.Tensor:
        parts = [self.id_table(self.id_rows(item_ids))]
        for c, table in enumerate(self.cat_tables):
            assert categorical is not None
            parts.append(table(categorical[:, c]))
        return torch.cat(parts, dim=-1)
