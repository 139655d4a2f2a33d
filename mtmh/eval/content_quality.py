"""How topical the content embeddings are on their own: top-k neighbour topic match vs random.

A diagnostic of the teacher, not a model input: it reads the evaluation labels after the
embeddings are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtmh.content.encode import EMBEDDINGS_FILE, read_embeddings
from mtmh.eval.topic_match import exact_neighbours, random_neighbours, topic_match_rate


def content_topic_match(run_dir: Path, k: int = 10, seed: int = 0) -> dict[str, Any]:
    ids, emb = read_embeddings(run_dir / "content" / EMBEDDINGS_FILE)
    items = pq.read_table(
        run_dir / "data" / "items.parquet", columns=["item_id", "topic_l1", "topic_l2"]
    )
    items = items.sort_by("item_id")
    if not (items["item_id"].to_numpy() == ids).all():
        raise ValueError("content embeddings and the item table cover different items")
    nbrs = exact_neighbours(emb, k)
    rand = random_neighbours(len(emb), nbrs.shape[1], seed)
    out: dict[str, Any] = {"k": int(nbrs.shape[1]), "items": len(ids)}
    for level in ("l1", "l2"):
        labels = items[f"topic_{level}"].to_pylist()
        out[f"{level}_match"] = topic_match_rate(nbrs, labels)
        out[f"{level}_random"] = topic_match_rate(rand, labels)
    return out
