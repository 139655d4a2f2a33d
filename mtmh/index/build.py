"""Build every head's ANN index of a model, the heads in parallel as Ray tasks.

Each task reads its head's embeddings from the run directory itself (on a cluster the run
directory is shared storage), builds the configured family (`index.family`), autotunes its
search setting for the run's K_ann (`index.autotune`) and writes the index with its metadata;
the driver only collects the metadata.

Example:
    metas = build_indexes(Path("runs/ml-100k"), "mtmh", cfg)   # {"engagement": ..., ...}
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from mtmh.config import RunConfig
from mtmh.embeddings import EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.index.artifact import IndexMeta, index_dir, make_meta, save_index
from mtmh.index.autotune import Tuned, autotune
from mtmh.index.faiss_index import build_exact, build_index, search_k

log = logging.getLogger(__name__)


def build_head_index(run_dir: Path, model: str, head: str, cfg: RunConfig) -> IndexMeta:
    """Build, autotune and save one head's index (runs inside a Ray task, or plainly)."""
    import faiss

    ic = cfg.index
    faiss.omp_set_num_threads(ic.build_threads)
    source = EmbeddingSource.named(run_dir, model)
    ids, vectors = source.load(head)
    started = time.perf_counter()
    index = build_index(vectors, ids, ic, seed=cfg.seed)
    build_seconds = time.perf_counter() - started
    tuned: Tuned | None = None
    if ic.autotune:
        # Serving searches K_ann + 1 neighbours of an item's own vector (retrieval/heads.py).
        n = len(ids)
        rng = np.random.default_rng(cfg.seed)
        queries = vectors[np.sort(rng.choice(n, min(ic.tune_queries, n), replace=False))]
        if not np.array_equal(ids, np.arange(n)):
            raise ArtifactError(f"{model}/{head}: autotune needs embeddings of item ids 0..N-1")
        tuned = autotune(
            index, vectors, queries, search_k(cfg.eval.k_ann_for(n), n), ic.target_recall
        )
        # A rule on the setting, not a timing, so runs of one seed serve the same index. CPU
        # serving only: a GPU keeps its IVF index.
        share = ic.exact_from_scanned
        if share is not None and not ic.use_gpu and tuned.scans_at_least(share):
            log.info(
                "%s/%s: %s at %s scans %.0f%% of %d items: serving exactly",
                model,
                head,
                tuned.family,
                tuned.params,
                100 * tuned.scanned,
                n,
            )
            index = build_exact(vectors, ids)
            tuned = tuned.as_exact()
    meta = make_meta(
        model,
        source.version,
        head,
        vectors.shape[1],
        ids,
        index,
        ic,
        build_seconds,
        tuned,
    )
    save_index(index, meta, index_dir(run_dir, model, head))
    return meta


def build_indexes(
    run_dir: Path, model: str, cfg: RunConfig, in_process: bool = False
) -> dict[str, IndexMeta]:
    """{head: meta} for every head of `model`, built concurrently as Ray tasks, or one after
    the other in this process with `in_process` (inside a Tune trial, whose placement group
    has no CPU for extra tasks)."""
    import ray

    heads = sorted(EmbeddingSource.named(run_dir, model).heads)
    if in_process:
        return {h: build_head_index(run_dir, model, h, cfg) for h in heads}
    task = ray.remote(build_head_index).options(
        num_cpus=cfg.index.build_cpus,
        num_gpus=1 if cfg.index.use_gpu else 0,
        name=f"index-{model}",
    )
    refs = {h: task.remote(run_dir.resolve(), model, h, cfg) for h in heads}
    metas = {h: ray.get(ref) for h, ref in refs.items()}
    for h, m in metas.items():
        log.info(
            "index %s/%s: %s over %d items, built in %.2f s, search %s (recall@%s %s)",
            model,
            h,
            m.kind,
            m.num_items,
            m.build_seconds,
            m.search_params or "default",
            m.tuned.get("k") if m.tuned else "-",
            f"{m.tuned['recall']:.4f}" if m.tuned else "not tuned",
        )
    return metas
