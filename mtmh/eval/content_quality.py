"""How topical each embedding space is on its own: the top-k exact neighbours of every item,
their topic match per level, the random-pair rate of the same items, and the lift.

The teacher (content encoder) is measured right after encoding (RUN/content/quality.json);
the report puts it beside every trained head, so that a reader can see whether the teacher
knows more about topics than co-engagement does. Distillation can only add relevance where
it does. A diagnostic, not a model input: it reads the evaluation labels after the
embeddings are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtmh.embeddings import CONTENT_SOURCE, EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.eval.topic_match import neighbour_topic_match

LEVELS = ("l1", "l2")


def _levels(run_dir: Path, ids: np.ndarray) -> dict[str, list[list[str] | None]]:
    items = pq.read_table(
        run_dir / "data" / "items.parquet", columns=["item_id", "topic_l1", "topic_l2"]
    ).sort_by("item_id")
    if not np.array_equal(items["item_id"].to_numpy(), ids):
        raise ArtifactError("embeddings and the item table cover different items")
    return {level: items[f"topic_{level}"].to_pylist() for level in LEVELS}


def head_topic_match(run_dir: Path, source: str, head: str, k: int = 10) -> dict[str, Any]:
    """{"k", "items", "l1_match", "l1_random", "l1_lift", "l2_...": ...} of one head."""
    ids, emb = EmbeddingSource.named(run_dir, source).load(head)
    return {"items": len(ids), **neighbour_topic_match(emb, _levels(run_dir, ids), k)}


def content_topic_match(run_dir: Path, k: int = 10) -> dict[str, Any]:
    """The teacher's neighbour match (written to RUN/content/quality.json)."""
    return head_topic_match(run_dir, CONTENT_SOURCE, CONTENT_SOURCE, k)


def neighbour_lifts(run_dir: Path, k: int = 10) -> dict[str, dict[str, Any]]:
    """The teacher and MTMH's two heads: {"teacher": ..., "engagement head": ...,
    "relevance head": ...}, the rows the report's neighbour-lift table and verdict read."""
    out = {"teacher": content_topic_match(run_dir, k)}
    for head in ("engagement", "relevance"):
        try:
            out[f"{head} head"] = head_topic_match(run_dir, "mtmh", head, k)
        except (FileNotFoundError, KeyError):
            continue
    return out
