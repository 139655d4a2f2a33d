"""The preranker's training rows: the real ANN stage run for validation users, labelled with
what each user engaged with after their cut.

For each user of the split's fit half, the model's heads search the user's triggers (the most
recent distinct items before the cut) exactly as serving does (K_ann + 1 per head and trigger,
the autotuned index). Every valid candidate of every head becomes a row of
`candidate_features`, with the item statistics as of the user's cut. Labels:

    engaged    the candidate is one of the user's items after the cut (the split's truth)
    satisfied  ... and its best weight there is >= preranker.satisfaction_threshold

No model was trained on these users' rows after the cut (mtmh/holdout.py holds them out of
pairs, peers and indexes), so a candidate's similarities look as they will for a user at
serving time. Negatives are sampled down to `preranker.max_examples` rows and weighted back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtmh.config import RunConfig
from mtmh.errors import ArtifactError
from mtmh.holdout import HoldoutUser
from mtmh.index.faiss_index import search_k
from mtmh.preranker.features import candidate_features
from mtmh.preranker.item_stats import ItemLog
from mtmh.retrieval.ranking import blocked_items
from mtmh.retrieval.retriever import Retriever


@dataclass(frozen=True)
class Examples:
    features: np.ndarray  # [R, F] float32
    engaged: np.ndarray  # [R] float32
    satisfied: np.ndarray  # [R] float32
    weight: np.ndarray  # [R] float32: 1 / sampling rate
    user: np.ndarray  # [R] user id (for the check split)

    def __len__(self) -> int:
        return len(self.engaged)

    def where(self, mask: np.ndarray) -> Examples:
        return Examples(
            self.features[mask],
            self.engaged[mask],
            self.satisfied[mask],
            self.weight[mask],
            self.user[mask],
        )


def build_examples(
    retriever: Retriever,
    order: tuple[str, ...],
    users: list[HoldoutUser],
    item_log: ItemLog,
    cfg: RunConfig,
) -> Examples:
    """Labelled rows of every head's candidates for `users` (heads read in `order`), from
    the retriever's own ANN stage."""
    num_items = item_log.num_items
    k = search_k(retriever.k_ann, num_items)
    expected = sum(len(order) * len(u.triggers) * k for u in users)
    rate = min(1.0, cfg.preranker.max_examples / max(expected, 1))
    rng = np.random.default_rng(cfg.seed)
    parts: list[Examples] = []
    for u in users:
        seen = u.history if cfg.eval.exclude_seen else np.zeros(0, np.int64)
        searched = retriever.search(u.triggers, seen)  # a partitioned head leaves `seen` out
        blocked = blocked_items(num_items, seen)
        stats = item_log.at(u.cut)
        rows = candidate_features(searched, order, u.triggers, blocked, stats)
        weights = u.truth_weights if u.truth_weights is not None else np.ones(len(u.truth))
        happy = u.truth[weights >= cfg.preranker.satisfaction_threshold]
        for r in rows.values():
            engaged = np.isin(r.items, u.truth)
            keep = engaged | (rng.random(len(engaged)) < rate)
            parts.append(
                Examples(
                    r.features[keep],
                    engaged[keep].astype(np.float32),
                    np.isin(r.items[keep], happy).astype(np.float32),
                    np.where(engaged[keep], 1.0, 1.0 / rate).astype(np.float32),
                    np.full(int(keep.sum()), u.user_id, np.int64),
                )
            )
    if not parts:
        raise ArtifactError("no preranker training rows: the validation split has no fit users")
    return Examples(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("features", "engaged", "satisfied", "weight", "user")
        )
    )
