"""Loading a run's item inputs for the tower: side features and content tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtmh.content.encode import EMBEDDINGS_FILE, read_embeddings
from mtmh.errors import ArtifactError
from mtmh.model.tower import ItemFeatureTables


def _fixed_width(rows: list[Any], width: int, dtype: type) -> np.ndarray:
    """Variable-length feature lists -> [N, width], zero-padded."""
    out: np.ndarray = np.zeros((len(rows), width), dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def load_item_tables(
    run_dir: Path, teacher: bool = False, content_features: bool = False
) -> ItemFeatureTables:
    """The item tables of `run_dir`. The teacher embeddings and the content features come
    from RUN/content (run encode_content first), each only when asked for. (The logQ
    correction's popularity is the training pairs', mtmh/model/training_pairs.py.)
    """
    data = run_dir / "data"
    spec = json.loads((data / "item_features.json").read_text())
    items = pq.read_table(
        data / "items.parquet", columns=["item_id", "dense", "categorical"]
    ).sort_by("item_id")
    n = items.num_rows
    if not (items["item_id"].to_numpy() == np.arange(n)).all():
        raise ArtifactError(f"{data / 'items.parquet'}: item ids are not 0..{n - 1}")
    dense = _fixed_width(items["dense"].to_pylist(), len(spec["dense_names"]), np.float32)
    cats = _fixed_width(items["categorical"].to_pylist(), len(spec["categorical_names"]), np.int64)
    tables = ItemFeatureTables(dense, cats, spec["categorical_cardinalities"])
    path = run_dir / "content" / EMBEDDINGS_FILE
    if teacher:
        tables.teacher = _content_vectors(path, "embedding", n)
    if content_features:
        tables.content_features = _content_vectors(path, "content_features", n)
    return tables


def _content_vectors(path: Path, column: str, n: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run ray_jobs/encode_content.py first")
    ids, vectors = read_embeddings(path, column)
    if len(ids) != n:
        raise ArtifactError(f"{path} covers {len(ids)} items, the catalog has {n}")
    return vectors
