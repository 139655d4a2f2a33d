"""One head of one model as the serving path searches it: the item vectors (queries are the
triggers' own embeddings) and the head's ANN index, version-checked against the embeddings.
The classic peers (ItemKNN, EASE) serve through the same interface: their precomputed
item-item neighbour tables stand in for the index (`NeighborHead`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mtmh.embeddings import EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.index.artifact import index_dir, load_index
from mtmh.index.faiss_index import ivf_part, search, search_k, set_nprobe, to_device
from mtmh.retrieval.quotas import QuotaCut

log = logging.getLogger(__name__)


class HeadSearch(NamedTuple):
    """One head's ANN stage for a user's triggers."""

    sims: np.ndarray  # [T, K] similarities, best first
    ids: np.ndarray  # [T, K] item ids, faiss's -1 where a row ran short
    cut: QuotaCut | None = None  # a partitioned head's share of each trigger's K by cluster


Searched = Mapping[str, HeadSearch]  # what the ANN stage returns, per head


@dataclass
class HeadIndex:
    """One head of one model: its item vectors (queries are the triggers' own embeddings)
    and its ANN index (any family of mtmh/index/faiss_index.py)."""

    model: str
    head: str
    version: str
    vectors: np.ndarray  # [N, D], row = item id
    index: Any

    def search(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self.index, self.vectors[items], k)

    def candidates(
        self, triggers: np.ndarray, k_ann: int, keep: int, blocked: np.ndarray | None = None
    ) -> HeadSearch:
        """The ANN stage for [T] triggers: K_ann candidates each, and one more, since the
        trigger itself usually comes first. Every head answers this one call; a global head
        leaves `keep` and the `blocked` (seen) items to the ranking, a partitioned one
        (mtmh/retrieval/partitioned.py) uses them to share its places among clusters."""
        return HeadSearch(*self.search(triggers, search_k(k_ann, len(self.vectors))))


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


@dataclass
class StoredVectorsHead(HeadIndex):
    """A head that keeps no copy of its item vectors beside the index: a trigger's query is
    read back from the index itself (`reconstruct_batch`; exact for every family here, which
    all store full vectors). Serving replicas use it: at 1M x 128 the copy would be 512 MB
    per head. `vectors` is an [N, 0] placeholder that only carries N."""

    def search(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self.index.reconstruct_batch(np.asarray(items, np.int64))
        return search(self.index, queries, k)

    @classmethod
    def of(cls, head: HeadIndex) -> StoredVectorsHead:
        """`head` without its vector copy (a CPU index; IVF gets the id -> list map it needs
        to read a vector back, 8 bytes per item)."""
        ivf = ivf_part(head.index)
        if ivf is not None:
            ivf.make_direct_map()
        placeholder = np.zeros((len(head.vectors), 0), np.float32)
        return cls(head.model, head.head, head.version, placeholder, head.index)


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
            raise ArtifactError(f"{model}/{head}: embeddings must cover item ids 0..N-1")
        index, _ = load_index(
            index_dir(run_dir, model, head), source.version, head, vectors.shape[1]
        )
        out[head] = HeadIndex(model, head, source.version, vectors, to_device(index, use_gpu))
    return out


def model_heads(run_dir: Path, source: str) -> tuple[str, ...]:
    """Every head of a model: a classic peer's one neighbour table, or an embedding source's
    heads (sorted, the order a preranker reads them in)."""
    from mtmh.peers.build import PEERS

    if source in PEERS:
        return (PEER_HEAD,)
    return tuple(sorted(EmbeddingSource.named(run_dir, source).heads))


def load_model_heads(
    run_dir: Path, source: str, heads: Sequence[str] | None = None, use_gpu: bool = False
) -> dict[str, HeadIndex]:
    """The named heads (default: all) of a model with their indexes, or a peer's table."""
    from mtmh.peers.build import PEERS

    if source in PEERS:
        return load_peer_head(run_dir, source)
    return load_heads(run_dir, source, heads or model_heads(run_dir, source), use_gpu=use_gpu)


def cover_k_ann(index: Any, k_ann: int, num_items: int, slack: float = 2.0) -> None:
    """Raise an IVF index's nprobe (C) until the probed lists hold about `slack`·K_ann items
    on average: with fewer, the search cannot return K_ann candidates at all (nprobe 16 of 512
    lists over 20,000 items scans ~625). The configured or autotuned nprobe stays the floor;
    an autotuned one normally covers K_ann already, since it was measured at K_ann + 1."""
    ivf = ivf_part(index) if index is not None else None
    if ivf is None:  # HNSW, exact, or a peer's neighbour table
        return
    needed = min(ivf.nlist, math.ceil(slack * k_ann * ivf.nlist / num_items))
    if ivf.nprobe < needed:
        log.info("nprobe %d -> %d so the probed lists can hold K_ann=%d", ivf.nprobe, needed, k_ann)
        set_nprobe(ivf, needed)
