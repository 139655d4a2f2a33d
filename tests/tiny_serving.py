"""A tiny run directory with exactly what the Serve app reads, written in seconds.

The files are the real artifact formats (the pipeline's config, items.parquet, per-head
embedding parquet files, FAISS indexes built and autotuned by `build_head_index`, a preranker state
dict); the weights are random rather than trained, which is all a serving test needs.
Different seeds make different model versions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.config import load_config, save_config
from mtmh.index.build import build_head_index
from mtmh.preranker.model import PrerankerModel
from mtmh.preranker.train import preranker_dir
from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from tests.tiny_data import TINY_SYNTHETIC

NUM_ITEMS = 600  # K_ann = 10% of the catalog = 60; K = 30
DIM = 16


def write_embeddings(path: Path, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)
    pq.write_table(pa.table({"item_id": pa.array(np.arange(n), pa.int32()), "embedding": emb}),
                   path)  # fmt: skip


def make_serving_run(run_dir: Path, seed: int) -> Path:
    cfg = load_config(overrides=TINY_SYNTHETIC)
    save_config(cfg, run_dir / "pipeline.yaml")
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    items = pa.table({
        "item_id": pa.array(np.arange(NUM_ITEMS), pa.int32()),
        "raw_id": pa.array([f"m{i}" for i in range(NUM_ITEMS)]),
    })  # fmt: skip
    pq.write_table(items, run_dir / "data" / "items.parquet")

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    for head in (ENGAGEMENT, RELEVANCE):
        vectors = centers[rng.integers(0, 20, NUM_ITEMS)] + 0.3 * rng.normal(size=(NUM_ITEMS, DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        write_embeddings(run_dir / "models" / "mtmh" / "embeddings" / f"{head}.parquet",
                         vectors.astype(np.float32))  # fmt: skip
    for head in (ENGAGEMENT, RELEVANCE):  # after both: the version hashes every head's file
        build_head_index(run_dir, "mtmh", head, cfg)

    torch.manual_seed(seed)
    model = PrerankerModel(NUM_ITEMS, cfg.preranker)
    out = preranker_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    save_config(cfg, out / "config.yaml")
    return run_dir
