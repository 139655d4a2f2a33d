"""FAISS inner-product indexes over item embeddings: exact (the reference) and three ANN
families (`IndexConfig.family`):

- "ivf_flat", spec section 6: items are k-means clustered offline (`nlist` coarse
  centroids); a query scans the `nprobe` (= C) nearest clusters' full vectors.
- "ivf_pq": the same clusters holding 4-bit fast-scan PQ codes (`IVF{nlist},PQ{m}x4fs`),
  whose candidates are re-ranked with the full vectors (`RFlat`, `k_factor_rf` x k of them).
  A probed list costs a fraction of a flat one, so far more lists fit the same time: the
  family for embeddings that are not tightly clustered.
- "hnsw": FAISS's HNSW graph over the full vectors (`efSearch` sets the search breadth).
- "exact": brute-force inner product, the reference the others are measured against, and
  what a small catalog is served with when the tuned setting would scan most of it anyway
  (`index.exact_from_scanned`).

Labels are item ids, so search results need no id mapping. Each family's search setting is
chosen at build time by measurement (mtmh/index/autotune.py) and set with FAISS's own
`ParameterSpace` (`set_search_params`).

GPU: with `use_gpu` (ivf_flat), k-means training and search run on GPU 0 through faiss-gpu;
the index is always stored in its CPU form. Asking for a GPU without faiss-gpu (or without a
GPU) is an error, never a silent CPU fallback.

Example:
    index = build_index(vectors, item_ids, IndexConfig(family="ivf_pq"))
    set_search_params(index, "nprobe=32,k_factor_rf=4")
    scores, ids = search(index, queries, k=100)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtmh.config import IndexConfig
from mtmh.errors import MtmhError


class AnnIndexError(MtmhError, RuntimeError):
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


def _kmeans_setup(ivf: Any, vectors: np.ndarray, cfg: IndexConfig, seed: int) -> np.ndarray:
    """Set an IVF index's k-means iterations and seed; returns the vectors to train it on (a
    seeded sample of `cfg.max_training_points` when there are more)."""
    ivf.cp.niter = cfg.kmeans_iterations
    ivf.cp.seed = seed
    n = len(vectors)
    if n <= cfg.max_training_points:
        return vectors
    rng = np.random.default_rng(seed)
    return vectors[np.sort(rng.choice(n, cfg.max_training_points, replace=False))]


def build_ivf(vectors: np.ndarray, item_ids: np.ndarray, cfg: IndexConfig, seed: int = 0) -> Any:
    """IVF-Flat over inner product, k-means trained on (a sample of) the vectors."""
    faiss = _faiss()
    n, dim = vectors.shape
    if n == 0:
        raise AnnIndexError("cannot build an index over zero items")
    nlist = default_nlist(n, cfg)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = _kmeans_setup(index, vectors, cfg, seed)
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
    set_nprobe(index, cfg.nprobe)
    return index


def factory_key(family: str, num_items: int, dim: int, cfg: IndexConfig) -> str:
    """The FAISS index_factory string of a family for this catalog."""
    if family == "ivf_flat":
        return f"IVF{default_nlist(num_items, cfg)},Flat"
    if family == "ivf_pq":
        m = cfg.pq_m or max(1, dim // 2)
        if dim % m:
            raise AnnIndexError(f"index.pq_m={m} must divide the embedding dimension {dim}")
        return f"IVF{default_nlist(num_items, cfg)},PQ{m}x4fs,RFlat"
    if family == "hnsw":
        return f"HNSW{cfg.hnsw_m},Flat"
    if family == "exact":
        return "IDMap2,Flat"
    raise AnnIndexError(
        f"unknown index family {family!r}: expected ivf_flat, ivf_pq, hnsw or exact"
    )


def build_index(vectors: np.ndarray, item_ids: np.ndarray, cfg: IndexConfig, seed: int = 0) -> Any:
    """The `cfg.family` index over `vectors`, labelled with `item_ids`, at its default search
    setting (`cfg.nprobe`; FAISS's defaults otherwise) until autotune picks one."""
    if cfg.family == "ivf_flat":
        return build_ivf(vectors, item_ids, cfg, seed)
    if cfg.family == "exact":
        if len(vectors) == 0:
            raise AnnIndexError("cannot build an index over zero items")
        return build_exact(vectors, item_ids)
    if cfg.use_gpu:
        _require_gpu()  # the config refuses GPU families FAISS lacks; this catches a bare config
    faiss = _faiss()
    n, dim = vectors.shape
    if n == 0:
        raise AnnIndexError("cannot build an index over zero items")
    ids = np.asarray(item_ids, dtype=np.int64)
    index = faiss.index_factory(
        dim, factory_key(cfg.family, n, dim, cfg), faiss.METRIC_INNER_PRODUCT
    )
    if cfg.family == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = cfg.hnsw_ef_construction
    else:
        ivf = faiss.extract_index_ivf(index)
        index.train(_as_f32(_kmeans_setup(ivf, vectors, cfg, seed)))
        set_nprobe(ivf, cfg.nprobe)
    # Only IVF-Flat takes ids itself; the refined and graph indexes number items by insertion,
    # so an id map labels them (not needed when the ids are already 0..N-1).
    if not np.array_equal(ids, np.arange(n)):
        index = faiss.IndexIDMap2(index)
        index.add_with_ids(_as_f32(vectors), ids)
    else:
        index.add(_as_f32(vectors))
    return index


def set_search_params(index: Any, params: str) -> None:
    """Apply a search setting such as "nprobe=32,k_factor_rf=4" or "efSearch=128" with FAISS's
    ParameterSpace, which finds the parameter through id maps and refine wrappers."""
    if params:
        _faiss().ParameterSpace().set_index_parameters(index, params)


def ivf_part(index: Any) -> Any | None:
    """The IVF index inside `index` (through id maps and refine wrappers), or None."""
    try:
        return _faiss().extract_index_ivf(index)
    except RuntimeError:
        return None


def family_of(index: Any) -> str:
    """Which family a (CPU) index belongs to: "exact", "ivf_flat", "ivf_pq" or "hnsw"."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    inner = faiss.downcast_index(inner)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexRefine):
        return "ivf_pq"
    if ivf_part(inner) is not None:
        return "ivf_flat"
    return "exact"


def to_device(index: Any, use_gpu: bool) -> Any:
    """The index for searching: moved to GPU 0 when asked (IVF-Flat and flat only)."""
    if not use_gpu:
        return index
    _require_gpu()
    family = family_of(index)
    if family not in ("ivf_flat", "exact"):
        raise AnnIndexError(
            f"a {family} index has no FAISS GPU form here: build the serving indexes with "
            "index.family=ivf_flat for GPU search"
        )
    faiss = _faiss()
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


def search_k(k_ann: int, num_items: int) -> int:
    """How many neighbours to ask an index for to keep K_ann candidates: one extra, so the
    trigger (usually its own nearest neighbour, never a candidate) does not cost a slot."""
    return min(k_ann + 1, num_items)


def set_nprobe(index: Any, nprobe: int) -> None:
    """The one place an IVF index's nprobe (C) is set, capped at its number of lists: on a
    CPU index through id maps and refine wrappers, or on a GPU IVF-Flat index itself."""
    ivf = ivf_part(index)
    target = ivf if ivf is not None else index
    if not hasattr(target, "nprobe"):
        raise AnnIndexError(f"a {type(index).__name__} index has no nprobe")
    target.nprobe = min(int(nprobe), int(getattr(target, "nlist", nprobe)))


def search(
    index: Any, queries: np.ndarray, k: int, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k] float32, item ids [Q, k] int64; -1 where fewer than k items were found)."""
    if nprobe is not None:
        set_nprobe(index, nprobe)
    scores, ids = index.search(_as_f32(queries), k)
    return scores, ids
