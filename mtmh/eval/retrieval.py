"""The serving path of spec section 6, in process: per-head ANN search, preranking of each
head's candidates separately, the quota merge, and pooling across a user's triggers.

The evaluation runs it over thousands of users; the Serve app's deployments call the same
functions one request at a time, so both return the same candidates for the same inputs.

Example:
    heads = load_heads(run_dir, "mtmh", ("engagement", "relevance"), use_gpu=False)
    ret = Retriever(heads, load_preranker(run_dir), k_ann=168, keep=30)
    kept = ret.preranked(history_ids, triggers, seen)      # {head: [T] ranked lists}
    per_trigger = ret.merge(kept, alpha=50)                 # [T] lists of Candidate
    ranked = pool(per_trigger, top_k=500)                   # [(item, score)]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtmh.data.histories import recent_window
from mtmh.embeddings import EmbeddingSource
from mtmh.index.artifact import index_dir, load_index
from mtmh.index.faiss_index import search, to_device
from mtmh.merge import ENGAGEMENT, RELEVANCE, Candidate, quota_merge
from mtmh.preranker.model import PrerankerModel

log = logging.getLogger(__name__)

Ranked = list[tuple[int, float]]  # (item id, preranker score), best first


@dataclass
class HeadIndex:
    """One head of one model: its item vectors (queries are the triggers' own embeddings)
    and its IVF index."""

    model: str
    head: str
    version: str
    vectors: np.ndarray  # [N, D], row = item id
    index: Any

    def search(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self.index, self.vectors[items], k)


def load_heads(
    run_dir: Path, model: str, heads: Sequence[str], use_gpu: bool = False
) -> dict[str, HeadIndex]:
    """The named heads of `model` with their saved indexes (version-checked)."""
    source = EmbeddingSource.named(run_dir, model)
    out = {}
    for head in heads:
        ids, vectors = source.load(head)
        if not np.array_equal(ids, np.arange(len(ids))):
            raise ValueError(f"{model}/{head}: embeddings must cover item ids 0..N-1")
        index, _ = load_index(index_dir(run_dir, model, head), source.version, head,
                              vectors.shape[1])  # fmt: skip
        out[head] = HeadIndex(model, head, source.version, vectors, to_device(index, use_gpu))
    return out


def cover_k_ann(index: Any, k_ann: int, num_items: int, slack: float = 2.0) -> None:
    """Raise an IVF index's nprobe (C) until the probed lists hold about `slack`·K_ann items
    on average: with fewer, the search cannot return K_ann candidates at all (nprobe 16 of 512
    lists over 20,000 items scans ~625). The configured nprobe stays the floor."""
    nlist = getattr(index, "nlist", None)
    if not nlist:
        return
    needed = min(nlist, math.ceil(slack * k_ann * nlist / num_items))
    if index.nprobe < needed:
        log.info("nprobe %d -> %d so the probed lists can hold K_ann=%d", index.nprobe, needed,
                 k_ann)  # fmt: skip
        index.nprobe = needed


def rank_rows(items: np.ndarray, scores: np.ndarray, keep: int) -> list[Ranked]:
    """Per row, the top `keep` valid (score > -inf) items by score, ties by smaller item id."""
    out = []
    for row_items, row_scores in zip(items, scores, strict=True):
        order = np.lexsort((row_items, -row_scores))
        ranked: Ranked = []
        for j in order:
            if not np.isfinite(row_scores[j]) or len(ranked) == keep:
                break
            ranked.append((int(row_items[j]), float(row_scores[j])))
        out.append(ranked)
    return out


class Retriever:
    def __init__(
        self, heads: dict[str, HeadIndex], preranker: PrerankerModel, k_ann: int, keep: int
    ) -> None:
        if not heads:
            raise ValueError("a retriever needs at least one head")
        self.heads = heads
        self.preranker = preranker
        self.num_items = next(iter(heads.values())).vectors.shape[0]
        self.k_ann = min(k_ann, self.num_items)
        self.keep = keep
        for head in heads.values():
            cover_k_ann(head.index, self.k_ann, self.num_items)

    @torch.no_grad()
    def user_vector(self, history: np.ndarray) -> torch.Tensor:
        window = recent_window(np.asarray(history, np.int64), self.preranker.cfg.history_length)
        return self.preranker.user_vectors(torch.as_tensor(window)[None])

    @torch.no_grad()
    def preranked(
        self, history: np.ndarray, triggers: np.ndarray, seen: Iterable[int] = ()
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates by preranker score}. The trigger
        itself and the `seen` items are never candidates."""
        triggers = np.asarray(triggers, np.int64)
        user = self.user_vector(history)
        blocked = np.zeros(self.num_items + 1, bool)  # last slot: faiss's -1 (no result)
        blocked[list(seen)] = True
        out = {}
        for name, head in self.heads.items():
            # One extra so the trigger (usually its own nearest neighbour) does not cost a slot.
            _, cands = head.search(triggers, min(self.k_ann + 1, self.num_items))
            cand_t = torch.as_tensor(np.where(cands < 0, 0, cands))
            scores = self.preranker.score(user.expand(len(triggers), -1), cand_t).numpy()
            invalid = blocked[cands] | (cands == triggers[:, None])
            scores = np.where(invalid, -np.inf, scores.astype(np.float64))
            out[name] = rank_rows(cands, scores, self.keep)
        return out

    def merge(self, kept: dict[str, list[Ranked]], alpha: float) -> list[list[Candidate]]:
        """Per trigger, the K = `keep` final candidates: the quota merge of two heads, or the
        one head's list for a single-head model."""
        if len(kept) == 1:
            ((name, lists),) = kept.items()
            return [[Candidate(i, s, name) for i, s in row[: self.keep]] for row in lists]
        if set(kept) != {ENGAGEMENT, RELEVANCE}:
            raise ValueError(f"cannot merge heads {sorted(kept)}")
        return [
            quota_merge(e, r, self.keep, alpha)
            for e, r in zip(kept[ENGAGEMENT], kept[RELEVANCE], strict=True)
        ]


def pool(per_trigger: Sequence[Sequence[Candidate]], top_k: int) -> Ranked:
    """A user's candidates over all triggers: deduplicated, by preranker score (ties: item
    id), the top `top_k`."""
    best: dict[int, float] = {}
    for row in per_trigger:
        for c in row:
            if c.item_id not in best or c.score > best[c.item_id]:
                best[c.item_id] = c.score
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:top_k]
