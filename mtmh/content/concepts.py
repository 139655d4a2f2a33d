"""Concept features: each item's concept strings, embedded by the frozen text tower and pooled.

Concepts are what the data says about an item besides its content: generated tags
(synthetic), knowledge-graph facts (ml-100k), hashtags or queries (a user's own `concepts`
column). Never the evaluation topic labels.

A concept found on fewer than `min_items` items is dropped: it links no two items, so it can
only teach the encoder to memorise. Each kept string is embedded once; embeddings are centred
(the mean over all kept concepts is removed, since strings of one kind, e.g. "actor m.0...",
share a large common component) and averaged per item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from mtmh.content.text_tower import TextTower


def pooled_concepts(
    concepts: Sequence[Sequence[str]], text: TextTower, min_items: int = 2
) -> tuple[np.ndarray, np.ndarray, int]:
    """[N] concept lists -> ([N, Ht] pooled embeddings, [N] bool has-concepts, kept count)."""
    counts = Counter(c for row in concepts for c in set(row))
    vocab = sorted(c for c, n in counts.items() if n >= min_items)
    emb = np.zeros((len(concepts), text.dim), np.float32)
    has = np.zeros(len(concepts), bool)
    if not vocab:
        return emb, has, 0
    index = {c: i for i, c in enumerate(vocab)}
    table = text.encode(vocab)  # [V, Ht]
    table -= table.mean(axis=0, keepdims=True)
    for i, row in enumerate(concepts):
        ids = sorted({index[c] for c in row if c in index})
        if ids:
            emb[i] = table[ids].mean(axis=0)
            has[i] = True
    return emb, has, len(vocab)
