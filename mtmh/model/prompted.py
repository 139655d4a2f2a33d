"""A prompted variant's query side (divide and conquer, spec section 11): every item's query
embedding for every cluster, and validation scores that search each cluster with its own
query. The table's file format is mtmh/clusters/query_table.py's.

In item-to-item retrieval a query is an item, so the query side is a function of (item,
cluster) and can be computed once per model, as the candidate embeddings are.

Example:
    queries = prompted_queries(tower)                                  # {head: [N, K, D]}
    scores = prompted_scores(torch.as_tensor(queries["engagement"]), emb, assignments)
"""

from __future__ import annotations

import numpy as np
import torch

from mtmh.clusters.kmeans import member_centroids
from mtmh.holdout import ScoreFn
from mtmh.model.tower import ItemTower


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


def prompted_scores(
    queries: torch.Tensor, emb: torch.Tensor, assignments: np.ndarray, visit: int | None = None
) -> ScoreFn:
    """[N, K, D] queries, [N, D] candidates -> scores where item j is scored by the trigger's
    query for j's cluster: each cluster searched with its own query, merged by score. With
    `visit`, only the trigger's `visit` nearest clusters are searched (cosine of its plain
    vector to each cluster's normalised mean, as the partitioned search serves); the others'
    items score -inf."""
    k = queries.shape[1]
    assign = np.asarray(assignments, np.int64)
    members = [torch.as_tensor(np.flatnonzero(assign == c)) for c in range(k)]
    centroids = torch.as_tensor(member_centroids(emb.float().numpy(), assign))

    def scores(triggers: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(triggers)
        q = queries[t].float()  # [T, K, D]
        out = torch.full((len(triggers), len(emb)), -torch.inf)
        near = torch.ones((len(triggers), k), dtype=torch.bool)
        if visit is not None and visit < k:
            nearest = (emb[t].float() @ centroids.T).topk(visit, dim=1).indices
            near = torch.zeros_like(near).scatter_(1, nearest, True)
        for c, idx in enumerate(members):
            rows = torch.nonzero(near[:, c]).squeeze(1)
            if len(rows):
                out[rows.unsqueeze(1), idx.unsqueeze(0)] = q[rows, c] @ emb[idx].T
        return out

    return scores
