"""The serving path of spec section 6, in process: per-head ANN search, preranking of each
head's candidates separately, the quota merge, and pooling across a user's triggers.

The evaluation runs it over thousands of users; the Serve app's deployments call the same
functions one request at a time, so both return the same candidates for the same inputs.

Two orders rank each head's K_ann candidates down to its `keep`:
- "preranker": the preranker's user-to-item score (spec section 6); the pool across triggers
  is ordered by it too.
- "ann": the head's own similarity order, no preranker; the pool across triggers sums each
  item's similarity over the triggers that retrieved it (the classic item-based CF rule).

The classic peers (ItemKNN, EASE) serve through the same path: their precomputed item-item
neighbour tables stand in for the ANN index (`NeighborHead`).

Example:
    heads = load_heads(run_dir, "mtmh", ("engagement", "relevance"), use_gpu=False)
    ret = Retriever(heads, load_preranker(run_dir), k_ann=168, keep=30)
    kept = ret.preranked(history_ids, triggers, seen)      # {head: [T] ranked lists}
    per_trigger = ret.merge(kept, alpha=50)                 # [T] lists of Candidate
    ranked = pool(per_trigger, top_k=500)                   # [(item, score)]
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


@dataclass
class NeighborHead(HeadIndex):
    """A classic peer's item-item neighbour table in place of an index: searching item i
    returns row i (best first, the item itself excluded)."""

    neighbor_ids: np.ndarray  # [N, K] int32
    neighbor_scores: np.ndarray  # [N, K] float32

    def search(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(items, np.int64)
        return (
            self.neighbor_scores[rows, :k].astype(np.float32),
            self.neighbor_ids[rows, :k].astype(np.int64),
        )


PEER_HEAD = "neighbors"  # the one head of a classic peer


def load_peer_head(run_dir: Path, peer: str) -> dict[str, HeadIndex]:
    """{"neighbors": NeighborHead} of a fitted classic peer (RUN/peers/<peer>/)."""
    path = run_dir / "peers" / peer / "neighbors.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the peers stage has not fitted {peer!r}")
    version = f"{peer}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    with np.load(path) as table:
        ids, scores = table["ids"], table["scores"]
    placeholder = np.zeros((len(ids), 0), np.float32)  # N rows, no vectors
    return {PEER_HEAD: NeighborHead(peer, PEER_HEAD, version, placeholder, None, ids, scores)}


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


def blocked_items(num_items: int, seen: Iterable[int]) -> np.ndarray:
    """[N + 1] mask of items that may not be candidates: `seen`, and the last slot for
    faiss's -1 (no result)."""
    blocked = np.zeros(num_items + 1, bool)
    blocked[list(seen)] = True
    blocked[num_items] = True
    return blocked


@torch.no_grad()
def user_vector(preranker: PrerankerModel, history: np.ndarray) -> torch.Tensor:
    """The preranker's [1, 2d] user vector of a history (item ids, oldest first)."""
    window = recent_window(np.asarray(history, np.int64), preranker.cfg.history_length)
    return preranker.user_vectors(torch.as_tensor(window)[None])


@torch.no_grad()
def score_candidates(
    preranker: PrerankerModel, users: torch.Tensor, cands: np.ndarray
) -> np.ndarray:
    """Preranker scores [R, C] of candidate rows `cands` [R, C] (faiss -1 allowed, scored as
    item 0 and masked later) for user vectors [R, 2d], one per row."""
    cand_t = torch.as_tensor(np.where(cands < 0, 0, cands))
    return preranker.score(users, cand_t).numpy().astype(np.float64)


def rank_candidates(
    cands: np.ndarray, scores: np.ndarray, triggers: np.ndarray, blocked: np.ndarray, keep: int
) -> list[Ranked]:
    """Per trigger, its `keep` best candidates by score; the trigger itself, blocked items and
    faiss's -1 are never candidates."""
    invalid = blocked[cands] | (cands == triggers[:, None])
    return rank_rows(cands, np.where(invalid, -np.inf, scores), keep)


def merge_heads(kept: dict[str, list[Ranked]], k: int, alpha: float) -> list[list[Candidate]]:
    """Per trigger, the K final candidates: the quota merge of two heads, or the one head's
    list for a single-head model."""
    if len(kept) == 1:
        ((name, lists),) = kept.items()
        return [[Candidate(i, s, name) for i, s in row[:k]] for row in lists]
    if set(kept) != {ENGAGEMENT, RELEVANCE}:
        raise ValueError(f"cannot merge heads {sorted(kept)}")
    return [
        quota_merge(e, r, k, alpha) for e, r in zip(kept[ENGAGEMENT], kept[RELEVANCE], strict=True)
    ]


def ann_k(k_ann: int, num_items: int) -> int:
    """How many neighbours to ask the index for: one extra so the trigger (usually its own
    nearest neighbour) does not cost a slot."""
    return min(k_ann + 1, num_items)


class Retriever:
    """The serving path for one user at a time, all in this process (the evaluation's)."""

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

    def search(self, triggers: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{head: (similarities [T, K], candidates [T, K])} of the ANN stage."""
        triggers = np.asarray(triggers, np.int64)
        return {
            name: head.search(triggers, ann_k(self.k_ann, self.num_items))
            for name, head in self.heads.items()
        }

    def preranked(
        self,
        history: np.ndarray,
        triggers: np.ndarray,
        seen: Iterable[int] = (),
        searched: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates by preranker score}. The trigger
        itself and the `seen` items are never candidates."""
        triggers = np.asarray(triggers, np.int64)
        searched = searched if searched is not None else self.search(triggers)
        users = user_vector(self.preranker, history).expand(len(triggers), -1)
        blocked = blocked_items(self.num_items, seen)
        out = {}
        for name, (_, cands) in searched.items():
            scores = score_candidates(self.preranker, users, cands)
            out[name] = rank_candidates(cands, scores, triggers, blocked, self.keep)
        return out

    def ann_ordered(
        self,
        triggers: np.ndarray,
        seen: Iterable[int] = (),
        searched: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> dict[str, list[Ranked]]:
        """{head: per trigger, its `keep` best ANN candidates in the head's similarity order}
        (no preranker). The same candidates `preranked` ranks, the same exclusions."""
        triggers = np.asarray(triggers, np.int64)
        searched = searched if searched is not None else self.search(triggers)
        blocked = blocked_items(self.num_items, seen)
        return {
            name: rank_candidates(cands, sims.astype(np.float64), triggers, blocked, self.keep)
            for name, (sims, cands) in searched.items()
        }

    def merge(self, kept: dict[str, list[Ranked]], alpha: float) -> list[list[Candidate]]:
        return merge_heads(kept, self.keep, alpha)


Pooling = Literal["max", "sum"]
# How each ranking order pools a user's triggers: preranker scores are one user's scores of
# an item, the same from every trigger ("max" keeps it); similarities add up ("sum").
POOLING: dict[str, Pooling] = {"preranker": "max", "ann": "sum"}


def pool_candidates(
    per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max"
) -> list[Candidate]:
    """A user's candidates over all triggers, deduplicated, the top `top_k` (ties: item id).
    "max": an item keeps its best score and that candidate's head; "sum": its scores over
    the triggers add up, and it keeps the head of its best one."""
    best: dict[int, Candidate] = {}
    total: dict[int, float] = {}
    for row in per_trigger:
        for c in row:
            total[c.item_id] = total.get(c.item_id, 0.0) + c.score
            if c.item_id not in best or c.score > best[c.item_id].score:
                best[c.item_id] = c
    if how == "sum":
        best = {i: Candidate(i, total[i], c.head) for i, c in best.items()}
    return sorted(best.values(), key=lambda c: (-c.score, c.item_id))[:top_k]


def pool(per_trigger: Sequence[Sequence[Candidate]], top_k: int, how: Pooling = "max") -> Ranked:
    """`pool_candidates` as (item, score) pairs."""
    return [(c.item_id, c.score) for c in pool_candidates(per_trigger, top_k, how)]
