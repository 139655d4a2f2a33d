"""The evaluation protocol of spec section 7 over one model: who is evaluated, with which
triggers, and the metrics of every alpha from one pass of retrieval.

- Users: up to `eval.max_users` users with history in both T1 and T2, sampled with
  `eval.seed` (the same users for every model).
- Triggers: the user's most recent distinct T1 items, at most `eval.max_triggers`.
- Truth: the user's distinct T2 items; with `eval.exclude_seen`, minus the T1 items (those
  are never candidates either). Users left with no truth are not evaluated.
- Per trigger and head: IVF top K_ann, where K_ann = min(eval.k_ann,
  k_ann_max_catalog_fraction * N) but at least `keep_per_head`; the preranker keeps
  `keep_per_head`; the quota merge gives K = keep_per_head per trigger.
- Per user: all triggers' candidates pooled, by preranker score, the top `top_k`.
- recall@K on the pooled list; L1/L2 topic match over the (trigger, merged candidate) pairs.

Every model is measured in two orders from one ANN search (mtmh/retrieval/): with the
preranker, and in ANN order (each head's own similarity, pooled by summed similarity). Both
rows go into the report with the mean number of unique pooled candidates per user, so the
preranker shows what it adds. The classic peers (ItemKNN, EASE) run through the same path,
their neighbour tables standing in for the ANN search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtmh.config import EvalConfig, RunConfig
from mtmh.data.histories import load_histories
from mtmh.eval.metrics import MatchCounter, RecallMean
from mtmh.eval.topic_match import lift, random_match_probability
from mtmh.index.faiss_index import build_exact, search
from mtmh.peers.build import PEERS
from mtmh.preranker.train import load_preranker
from mtmh.retrieval.heads import PEER_HEAD, HeadIndex, NeighborHead, load_heads, load_peer_head
from mtmh.retrieval.merge import POOLING, Ranked, pool
from mtmh.retrieval.ranking import RANKINGS
from mtmh.retrieval.retriever import Retriever
from mtmh.validation import HoldoutSplit


@dataclass(frozen=True)
class ModelSpec:
    """A row of the report: which embeddings, and which of their heads serve."""

    name: str  # as reported ("MTMH", "MTMH-H1", "ContentEncoder", ...)
    source: str  # embedding source: a variant, or "content"
    heads: tuple[str, ...]


REPORT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("ItemKNN", "itemknn", (PEER_HEAD,)),
    ModelSpec("EASE", "ease", (PEER_HEAD,)),
    ModelSpec("ItemCF", "itemcf", ("engagement",)),
    ModelSpec("NeuCF", "neucf", ("engagement",)),
    ModelSpec("MoL", "mol", ("engagement",)),
    ModelSpec("HLLM", "hllm", ("engagement",)),
    ModelSpec("ContentEncoder", "content", ("content",)),
    ModelSpec("MTSH", "mtsh", ("engagement",)),
    ModelSpec("STMH", "stmh", ("engagement", "relevance")),
    ModelSpec("MTMH-H1", "mtmh", ("engagement",)),
    ModelSpec("MTMH-H2", "mtmh", ("relevance",)),
    ModelSpec("MTMH", "mtmh", ("engagement", "relevance")),
)


@dataclass(frozen=True)
class EvalUser:
    user_id: int
    history: np.ndarray  # T1 items, oldest first
    triggers: np.ndarray  # most recent distinct T1 items, most recent first
    truth: frozenset[int]  # T2 items to find


def effective_k_ann(cfg: EvalConfig, num_items: int) -> int:
    return cfg.k_ann_for(num_items)


def sample_users(run_dir: Path, cfg: EvalConfig) -> list[EvalUser]:
    data = run_dir / "data"
    users = pq.read_table(data / "users", columns=["user_id", "is_eval"])
    ids = np.sort(users["user_id"].to_numpy()[users["is_eval"].to_numpy()])
    if cfg.max_users is not None and len(ids) > cfg.max_users:
        rng = np.random.default_rng(cfg.seed)
        ids = np.sort(rng.choice(ids, cfg.max_users, replace=False))
    t1 = load_histories(data / "t1", ids)
    t2 = load_histories(data / "t2", ids)
    out = []
    for u in ids:
        u = int(u)
        if u not in t1 or u not in t2:
            continue
        items = t1[u].items
        _, first = np.unique(items[::-1], return_index=True)  # most recent occurrence
        triggers = items[::-1][np.sort(first)][: cfg.max_triggers]
        truth = set(t2[u].items.tolist())
        if cfg.exclude_seen:
            truth -= set(items.tolist())
        if truth:
            out.append(EvalUser(u, items, triggers, frozenset(truth)))
    return out


def holdout_users(split: HoldoutSplit) -> list[EvalUser]:
    """The validation split's users in the evaluation's form (triggers before the cut, the
    held-out items as truth)."""
    return [
        EvalUser(u.user_id, u.history, u.triggers, frozenset(u.truth.tolist())) for u in split.users
    ]


def load_source(
    run_dir: Path, source: str, heads: tuple[str, ...], use_gpu: bool = False
) -> dict[str, HeadIndex]:
    """The heads of an embedding source with their indexes, or a classic peer's table."""
    if source in PEERS:
        return load_peer_head(run_dir, source)
    return load_heads(run_dir, source, heads, use_gpu=use_gpu)


@dataclass(frozen=True)
class TopicLevel:
    """One label level, per item id (evaluation only)."""

    labels: list[frozenset[str]]
    random_probability: np.ndarray  # chance a random labelled item matches; NaN if unlabelled


def label_sets(run_dir: Path) -> dict[str, TopicLevel]:
    """{"l1": ..., "l2": ...}: each level's label sets and random-pair match chances."""
    items = pq.read_table(
        run_dir / "data" / "items.parquet", columns=["item_id", "topic_l1", "topic_l2"]
    ).sort_by("item_id")
    out = {}
    for level in ("l1", "l2"):
        labels = [frozenset(x or ()) for x in items[f"topic_{level}"].to_pylist()]
        out[level] = TopicLevel(labels, random_match_probability(labels))
    return out


def evaluate_model(
    run_dir: Path,
    spec: ModelSpec,
    cfg: RunConfig,
    users: list[EvalUser],
    alphas: list[float],
    ranking: str = "preranker",
) -> dict[str, Any]:
    """{"by_alpha": {alpha: metrics} in `ranking` order, "by_ranking": {order: {alpha:
    metrics}}, "ann_recall": {head: ...}, "users": n, ...} for one model. Single-head models
    ignore alpha (one entry, keyed by the first alpha)."""
    return evaluate_source(run_dir, [spec], cfg, users, alphas, ranking)[spec.name]


def evaluate_source(
    run_dir: Path,
    specs: list[ModelSpec],
    cfg: RunConfig,
    users: list[EvalUser],
    alphas: list[float],
    ranking: str = "preranker",
) -> dict[str, dict[str, Any]]:
    """`evaluate_model` for every spec over one embedding source (MTMH, MTMH-H1, MTMH-H2
    share the mtmh heads): search and both orders run once per head, then each spec merges
    its own subset of the heads."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking {ranking!r}: expected one of {RANKINGS}")
    import faiss

    faiss.omp_set_num_threads(1)
    ec = cfg.eval
    sources = {spec.source for spec in specs}
    if len(sources) != 1:
        raise ValueError(f"evaluate_source takes specs of one source, got {sorted(sources)}")
    all_heads = tuple(sorted({h for spec in specs for h in spec.heads}))
    heads = load_source(run_dir, specs[0].source, all_heads, use_gpu=cfg.index.use_gpu)
    num_items = next(iter(heads.values())).vectors.shape[0]
    ret = Retriever(heads, load_preranker(run_dir), effective_k_ann(ec, num_items),
                    ec.keep_per_head)  # fmt: skip
    labels = label_sets(run_dir)
    kept: dict[str, list[dict[str, list[Ranked]]]] = {order: [] for order in RANKINGS}
    for u in users:
        seen = u.history if ec.exclude_seen else ()
        searched = ret.search(u.triggers)
        kept["preranker"].append(ret.preranked(u.history, u.triggers, seen, searched))
        kept["ann"].append(ret.ann_ordered(u.triggers, seen, searched))
    ann = {
        h: ann_recall(hi.vectors, hi.index, ret.k_ann, ec)
        for h, hi in heads.items()
        if not isinstance(hi, NeighborHead)  # a peer's table is exact by construction
    }
    out = {}
    for spec in specs:
        spec_alphas = alphas if len(spec.heads) == 2 else alphas[:1]
        by_ranking = {}
        for order, order_kept in kept.items():
            spec_kept = [{h: user_kept[h] for h in spec.heads} for user_kept in order_kept]
            by_ranking[order] = {
                alpha: _metrics(ret, users, spec_kept, alpha, labels, ec, order)
                for alpha in spec_alphas
            }
        out[spec.name] = {
            "by_alpha": by_ranking[ranking],
            "by_ranking": by_ranking,
            "ann_recall": {h: ann[h] for h in spec.heads if h in ann},
            "users": len(users),
            "k_ann": ret.k_ann,
            "model_version": heads[spec.heads[0]].version,
        }
    return out


def _metrics(
    ret: Retriever,
    users: list[EvalUser],
    kept: list[dict[str, list[Ranked]]],
    alpha: float,
    labels: dict[str, TopicLevel],
    ec: EvalConfig,
    order: str,
) -> dict[str, float]:
    """recall@K of the pooled lists, topic match of the merged per-trigger lists, and the
    mean number of unique candidates a user's triggers pool (before the top_k cut)."""
    recall = RecallMean(tuple(ec.recall_at))
    match = {lvl: MatchCounter(t.labels, t.random_probability) for lvl, t in labels.items()}
    unique = 0
    for user, user_kept in zip(users, kept, strict=True):
        per_trigger = ret.merge(user_kept, alpha)
        for trigger, row in zip(user.triggers, per_trigger, strict=True):
            for counter in match.values():
                counter.add(int(trigger), [c.item_id for c in row])
        unique += len({c.item_id for row in per_trigger for c in row})
        pooled = pool(per_trigger, ec.top_k, POOLING[order])
        recall.add([item for item, _ in pooled], set(user.truth))
    return {
        **{f"recall@{k}": v for k, v in recall.means().items()},
        **{f"recall@{k}_se": v for k, v in recall.standard_errors().items()},
        **{
            f"{lvl}_{name}": value
            for lvl, counter in match.items()
            for name, value in (
                ("match", counter.rate),
                ("random", counter.random_rate),
                ("lift", lift(counter.rate, counter.random_rate)),
            )
        },
        "unique_candidates": unique / len(users) if users else float("nan"),
    }


def ann_recall(vectors: np.ndarray, index: Any, k_ann: int, cfg: EvalConfig) -> dict[str, float]:
    """Recall of the IVF index's top-k against the exact top-k, over sampled item queries."""
    rng = np.random.default_rng(cfg.seed)
    n = len(vectors)
    queries = vectors[np.sort(rng.choice(n, min(cfg.ann_recall_queries, n), replace=False))]
    exact = build_exact(vectors, np.arange(n))
    out = {}
    for k in sorted({min(100, k_ann), k_ann}):
        _, truth = search(exact, queries, k)
        _, found = search(index, queries, k)
        hits = sum(len(set(t) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
        out[f"recall@{k}"] = hits / (k * len(queries))
    return out
