"""A prompted model's query table (divide and conquer, spec section 11): item i's query
embedding for cluster c, for every item and cluster, beside the model's candidate embeddings.

    RUN/models/<name>/queries/<head>.npy    [N, K, D] float16
    RUN/models/<name>/queries/meta.json     the clusters it was trained against (a digest of
                                            RUN/clusters' assignments), shape and dtype

float16 halves the table (ml-1m: 3,883 x 32 x 128 x 2 bytes = 32 MB) and moves an inner
product by about 1e-3, far below the gaps between neighbours. At a catalog of millions the
table would not fit (N x K x D); there the query side would run the tower per request, which
this layout leaves open: the candidate side is the plain embeddings either way.

The clusters are part of the model: a query for cluster c means something only against the
clusters its prompts were trained on, so loading checks the digest against the clusters in use.

Example:
    save_queries(model_dir, {"engagement": q}, clusters_digest(assignments))
    q = load_queries(model_dir, "engagement", assignments)     # [N, K, D] float32
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mtmh.errors import ArtifactError

QUERIES_DIR = "queries"
META_FILE = "meta.json"


def clusters_digest(assignments: np.ndarray) -> str:
    """A short hash of a cluster assignment (the clusters a prompted model belongs to)."""
    return hashlib.sha256(np.asarray(assignments, np.int32).tobytes()).hexdigest()[:16]


def queries_dir(model_dir: Path) -> Path:
    return model_dir / QUERIES_DIR


def save_queries(model_dir: Path, queries: dict[str, np.ndarray], digest: str) -> None:
    folder = queries_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for head, q in queries.items():
        np.save(folder / f"{head}.npy", q.astype(np.float16))
    shape = list(next(iter(queries.values())).shape)
    meta = {"clusters_digest": digest, "shape": shape, "dtype": "float16", "heads": sorted(queries)}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def has_queries(model_dir: Path) -> bool:
    return (queries_dir(model_dir) / META_FILE).is_file()


def load_queries(model_dir: Path, head: str, assignments: np.ndarray) -> np.ndarray:
    """[N, K, D] float32 queries of `head`, checked against the clusters in use."""
    folder = queries_dir(model_dir)
    if not has_queries(model_dir):
        raise FileNotFoundError(f"{folder}: no prompted queries; train a prompted variant first")
    meta = json.loads((folder / META_FILE).read_text())
    if meta["clusters_digest"] != clusters_digest(assignments):
        raise ArtifactError(
            f"{folder}: the model was trained against other clusters than RUN/clusters now "
            "holds; retrain it (its prompts are per cluster)"
        )
    return np.load(folder / f"{head}.npy").astype(np.float32)
