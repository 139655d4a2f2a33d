"""A prompted variant's query side (divide and conquer, spec section 11): every item's query
embedding for every cluster, as one table beside the candidate embeddings.

In item-to-item retrieval a query is an item, so the query side is a function of (item,
cluster) and can be computed once per model, as the candidate embeddings are:

    RUN/models/<name>/queries/<head>.npy    [N, K, D] float16: item i's query for cluster c
    RUN/models/<name>/queries/meta.json     the clusters it was trained against (a digest of
                                            RUN/clusters' assignments), shape and dtype

float16 halves the table (ml-1m: 3,883 x 32 x 128 x 2 bytes = 32 MB) and moves an inner
product by about 1e-3, far below the gaps between neighbours. At a catalog of millions
the table would not fit (N x K x D); there the query side runs the tower per request
instead, which this layout leaves open: the candidate side is the plain embeddings either way.

The clusters are part of the model: a query for cluster c is only meaningful against the
clusters the prompts were trained on, so loading checks the digest against RUN/clusters.

Example:
    queries = prompted_queries(tower)                    # {head: [N, K, D]}
    save_queries(model_dir, queries, clusters_digest(assignments))
    q = load_queries(model_dir, "engagement", assignments)
    scores = prompted_scores(torch.as_tensor(q), emb, assignments)   # ScoreFn for validation
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from mtmh.errors import ArtifactError
from mtmh.holdout import ScoreFn
from mtmh.model.tower import ItemTower

QUERIES_DIR = "queries"
META_FILE = "meta.json"


def clusters_digest(assignments: np.ndarray) -> str:
    """A short hash of a cluster assignment (the clusters a prompted model belongs to)."""
    return hashlib.sha256(np.asarray(assignments, np.int32).tobytes()).hexdigest()[:16]


@torch.no_grad()
def prompted_queries(tower: ItemTower, batch_size: int = 8192) -> dict[str, np.ndarray]:
    """{head: [N, K, D] float32}: every item prompted with every cluster's prompt."""
    if tower.num_prompts == 0:
        raise ValueError(f"variant {tower.variant.name!r} has no prompts")
    was_training = tower.training
    tower.eval()
    n, k, device = tower.num_items, tower.num_prompts, tower.dense_table.device
    parts: dict[str, list[np.ndarray]] = {h: [] for h in tower.heads}  # per cluster: [N, D]
    for c in range(k):
        cols: dict[str, list[np.ndarray]] = {h: [] for h in tower.heads}
        for start in range(0, n, batch_size):
            ids = torch.arange(start, min(n, start + batch_size), device=device)
            prompt = torch.full_like(ids, c)
            for head, emb in tower(ids, prompt=prompt).items():
                cols[head].append(emb.float().cpu().numpy())
        for head in tower.heads:
            parts[head].append(np.concatenate(cols[head]))
    tower.train(was_training)
    return {head: np.stack(per_cluster, axis=1) for head, per_cluster in parts.items()}


def prompted_scores(queries: torch.Tensor, emb: torch.Tensor, assignments: np.ndarray) -> ScoreFn:
    """[N, K, D] queries, [N, D] candidates -> scores where item j is scored by the trigger's
    query for j's cluster: every cluster searched with its own query, merged by score."""
    members = [torch.as_tensor(np.flatnonzero(assignments == c)) for c in range(queries.shape[1])]

    def scores(triggers: np.ndarray) -> torch.Tensor:
        q = queries[torch.as_tensor(triggers)].float()  # [T, K, D]
        out = torch.empty((len(triggers), len(emb)))
        for c, idx in enumerate(members):
            out[:, idx] = q[:, c] @ emb[idx].T
        return out

    return scores


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
