"""FAISS inner-product indexes over item embeddings: exact (the reference) and IVF.

IVF follows spec section 6: items are k-means clustered offline (`nlist` coarse centroids);
a query scans the `nprobe` (= C) nearest clusters and returns the top `k` among their items.
Labels are item ids (`add_with_ids`), so search results need no id mapping.

GPU: with `use_gpu`, k-means training and search run on GPU 0 through faiss-gpu; the index is
always stored in its CPU form. Asking for a GPU without faiss-gpu (or without a GPU) is an
error, never a silent CPU fallback.

Example:
    index = build_ivf(vectors, item_ids, IndexConfig(nprobe=16))
    scores, ids = search(index, queries, k=100, nprobe=16)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtmh.config import IndexConfig


class AnnIndexError(RuntimeError):
    """An index cannot be built, loaded or searched as asked."""


def _faiss() -> Any:
    import faiss

    return faiss


def default_nlist(num_items: int, cfg: IndexConfig) -> int:
    """cfg.nlist, else ~4·sqrt(N), capped so each list gets `min_points_per_list` points."""
    wanted = cfg.nlist or max(1, round(4 * math.sqrt(num_items)))
    return max(1, min(wanted, num_items // cfg.min_points_per_list or 1))


def gpu_available() -> bool:
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _require_gpu() -> None:
    if not gpu_available():
        raise AnnIndexError(
            "index.use_gpu is set but faiss has no GPU support here: install the `gpu` extra "
            "(faiss-gpu) on a machine with a CUDA GPU, or set index.use_gpu=false"
        )


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def build_exact(vectors: np.ndarray, item_ids: np.ndarray) -> Any:
    """Brute-force inner-product index: the ground truth the IVF index is measured against."""
    faiss = _faiss()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(_as_f32(vectors), np.asarray(item_ids, dtype=np.int64))
    return index


def build_ivf(vectors: np.ndarray, item_ids: np.ndarray, cfg: IndexConfig, seed: int = 0) -> Any:
    """IVF-Flat over inner product, k-means trained on (a sample of) the vectors."""
    faiss = _faiss()
    n, dim = vectors.shape
    if n == 0:
        raise AnnIndexError("cannot build an index over zero items")
    nlist = default_nlist(n, cfg)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = cfg.kmeans_iterations
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    sample = vectors
    if n > cfg.max_training_points:
        sample = vectors[np.sort(rng.choice(n, cfg.max_training_points, replace=False))]
    if cfg.use_gpu:
        _require_gpu()
        res = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
        gpu_index.train(_as_f32(sample))
        gpu_index.add_with_ids(_as_f32(vectors), np.asarray(item_ids, dtype=np.int64))
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.train(_as_f32(sample))
        index.add_with_ids(_as_f32(vectors), np.asarray(item_ids, dtype=np.int64))
    index.nprobe = min(cfg.nprobe, nlist)
    return index


def to_device(index: Any, use_gpu: bool) -> Any:
    """The index for searching: moved to GPU 0 when asked (IVF and flat both support it)."""
    if not use_gpu:
        return index
    _require_gpu()
    faiss = _faiss()
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


def search(
    index: Any, queries: np.ndarray, k: int, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k] float32, item ids [Q, k] int64; -1 where fewer than k items were found)."""
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe
    scores, ids = index.search(_as_f32(queries), k)
    return scores, ids
