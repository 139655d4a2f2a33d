"""Build every head's IVF index of a model, the heads in parallel as Ray tasks.

Each task reads its head's embeddings from the run directory itself (on a cluster the run
directory is shared storage), trains k-means, adds the items and writes the index with its
metadata; the driver only collects the metadata.

Example:
    metas = build_indexes(cfg, Path("runs/ml-100k"), "mtmh")   # {"engagement": ..., ...}
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mtmh.config import IndexConfig
from mtmh.embeddings import EmbeddingSource
from mtmh.index.artifact import IndexMeta, index_dir, make_meta, save_index
from mtmh.index.faiss_index import build_ivf

log = logging.getLogger(__name__)


def build_head_index(
    run_dir: Path, model: str, head: str, cfg: IndexConfig, seed: int
) -> IndexMeta:
    """Build and save one head's index (runs inside a Ray task, or plainly)."""
    import faiss

    faiss.omp_set_num_threads(cfg.build_threads)
    source = EmbeddingSource.named(run_dir, model)
    ids, vectors = source.load(head)
    started = time.perf_counter()
    index = build_ivf(vectors, ids, cfg, seed=seed)
    meta = make_meta(
        model, source.version, head, vectors.shape[1], ids, index, cfg,
        time.perf_counter() - started,
    )  # fmt: skip
    save_index(index, meta, index_dir(run_dir, model, head))
    return meta


def build_indexes(
    run_dir: Path, model: str, cfg: IndexConfig, seed: int = 0, in_process: bool = False
) -> dict[str, IndexMeta]:
    """{head: meta} for every head of `model`, built concurrently as Ray tasks, or one after
    the other in this process with `in_process` (inside a Tune trial, whose placement group
    has no CPU for extra tasks)."""
    import ray

    heads = sorted(EmbeddingSource.named(run_dir, model).heads)
    if in_process:
        return {h: build_head_index(run_dir, model, h, cfg, seed) for h in heads}
    task = ray.remote(build_head_index).options(
        num_cpus=cfg.build_cpus, num_gpus=1 if cfg.use_gpu else 0, name=f"index-{model}"
    )
    refs = {h: task.remote(run_dir.resolve(), model, h, cfg, seed) for h in heads}
    metas = {h: ray.get(ref) for h, ref in refs.items()}
    for h, m in metas.items():
        log.info("index %s/%s: %d items, nlist %d, %.2f s", model, h, m.num_items, m.nlist,
                 m.build_seconds)  # fmt: skip
    return metas
