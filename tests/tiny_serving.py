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

from mtmh.clusters.artifact import save_clusters
from mtmh.clusters.kmeans import spherical_kmeans
from mtmh.config import load_config, save_config
from mtmh.index.build import build_head_index
from mtmh.preranker.features import feature_names
from mtmh.preranker.item_stats import STATS_FILE, ItemStats
from mtmh.preranker.model import PrerankerModel
from mtmh.preranker.ranker import Preranker, preranker_dir, save_preranker
from mtmh.retrieval.merge import ENGAGEMENT, RELEVANCE
from tests.tiny_data import TINY_SYNTHETIC

NUM_ITEMS = 600  # K_ann = 10% of the catalog = 60; K = 30
DIM = 16
NUM_CLUSTERS = 6


def tiny_topic(item_id: int) -> str:
    return f"topic{item_id % 5}"


def write_embeddings(path: Path, vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)
    pq.write_table(
        pa.table({"item_id": pa.array(np.arange(n), pa.int32()), "embedding": emb}), path
    )


def make_serving_run(run_dir: Path, seed: int) -> Path:
    cfg = load_config(overrides=TINY_SYNTHETIC)
    save_config(cfg, run_dir / "pipeline.yaml")
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    # Titles and topics as prepare writes them (the explore page and /items show them).
    items = pa.table(
        {
            "item_id": pa.array(np.arange(NUM_ITEMS), pa.int32()),
            "raw_id": pa.array([f"m{i}" for i in range(NUM_ITEMS)]),
            "text": pa.array([f"Title {i} of {tiny_topic(i)}\nbody" for i in range(NUM_ITEMS)]),
            "topic_l1": pa.array(
                [[tiny_topic(i)] for i in range(NUM_ITEMS)], pa.list_(pa.string())
            ),
            "interactions": pa.array(np.arange(NUM_ITEMS) % 37, pa.int64()),
        }
    )
    pq.write_table(items, run_dir / "data" / "items.parquet")

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    for head in (ENGAGEMENT, RELEVANCE):
        vectors = centers[rng.integers(0, 20, NUM_ITEMS)] + 0.3 * rng.normal(size=(NUM_ITEMS, DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        write_embeddings(
            run_dir / "models" / "mtmh" / "embeddings" / f"{head}.parquet",
            vectors.astype(np.float32),
        )
    # The catalog's clusters (divide-and-conquer requests), from the last head's vectors.
    clustering = spherical_kmeans(vectors.astype(np.float32), NUM_CLUSTERS, seed=seed)
    save_clusters(run_dir, clustering, {"source": "mtmh", "head": RELEVANCE})
    for head in (ENGAGEMENT, RELEVANCE):  # after both: the version hashes every head's file
        build_head_index(run_dir, "mtmh", head, cfg)

    write_report(run_dir)
    write_preranker(run_dir, seed)
    return run_dir


def write_preranker(run_dir: Path, seed: int) -> None:
    """An untrained preranker with random weights (a real model, item stats and meta)."""
    heads = (ENGAGEMENT, RELEVANCE)
    torch.manual_seed(seed)
    model = PrerankerModel(len(feature_names(heads)), hidden_dim=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)  # a ranking unlike ANN order, so the two paths differ
    stats = ItemStats(np.arange(NUM_ITEMS) % 37, (np.arange(NUM_ITEMS) % 11).astype(np.float32))
    preranker_dir(run_dir).mkdir(parents=True, exist_ok=True)
    stats.save(preranker_dir(run_dir) / STATS_FILE)
    save_preranker(run_dir, "mtmh", Preranker(model, heads, stats), {"rows": 0})


def write_report(run_dir: Path) -> None:
    """A small report.md, a plot and a sweep report, as evaluate.py and sweep_wr.py write
    them (the report page shows them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / "tune").mkdir(parents=True, exist_ok=True)
    (run_dir / "report.md").write_text(
        "# tiny: MTMH evaluation\n\n| model | R@100 | L1 |\n|---|---|---|\n"
        "| ItemKNN | 26.56 | 56.54 |\n| MTMH | 25.15 | 52.19 |\n\n<script>alert(1)</script>\n"
    )
    (run_dir / "tune" / "wr_sweep.md").write_text(
        "# w_r sweep\n\n| w_r | R@500 |\n|---|---|\n| 0.5 | 60.1 |\n"
    )
    for name in ("alpha_curve.png", "tune/wr_sweep.png"):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 50, 100], [40, 55, 60])
        fig.savefig(run_dir / name)
        plt.close(fig)
