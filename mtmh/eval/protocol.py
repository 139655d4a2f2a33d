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
- Per user: all triggers' candidates pooled (scores summed over triggers), the top `top_k`.
- recall@K and NDCG@20 on the pooled list; L1/L2 topic match over the (trigger, merged
  candidate) pairs.

Every model is measured in two orders from one ANN search (mtmh/retrieval/): with its own
preranker (mtmh/preranker/, one per model, peers included), and in ANN order (each head's own
similarity). Both rows go into the report with the mean number of unique pooled candidates
per user, so the preranker shows what it adds. The classic peers (ItemKNN, EASE) run through
the same path, their neighbour tables standing in for the ANN search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtmh.config import EvalConfig, RunConfig
from mtmh.data.histories import load_histories
from mtmh.eval.cold_start import ColdStartMeter
from mtmh.eval.diversity import DiversityMeter, EvalCatalog
from mtmh.eval.metrics import MatchCounter, RecallMean
from mtmh.eval.topic_match import lift
from mtmh.holdout import HoldoutSplit
from mtmh.index.autotune import recall_at
from mtmh.index.faiss_index import build_exact, search
from mtmh.preranker.ranker import load_preranker
from mtmh.retrieval.heads import PEER_HEAD, NeighborHead
from mtmh.retrieval.merge import POOLING, Candidate, pool
from mtmh.retrieval.ranking import RANKINGS
from mtmh.retrieval.retriever import Retriever
from mtmh.retrieval.served import served_heads


@dataclass(frozen=True)
class ModelSpec:
    """A row of the report: which embeddings, and which of their heads serve."""

    name: str  # as reported ("MTMH", "MTMH-H1", "ContentEncoder", ...)
    source: str  # embedding source: a variant, or "content"
    heads: tuple[str, ...]
    # Searched cluster by cluster (clusters.visit/strategy) instead of globally; a prompted
    # model (DAT) always is (mtmh/retrieval/served.py).
    partitioned: bool = False

    @property
    def group(self) -> tuple[str, bool]:
        """Rows of one group share one search: one source, searched one way."""
        return self.source, self.partitioned


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
    # Divide and conquer (spec section 11): the dat variant, and MTMH's heads searched the
    # same cluster-partitioned way, so the search and the model can be told apart.
    ModelSpec("DAT", "dat", ("engagement",)),
    ModelSpec("MTMH-H1 (DAT serving)", "mtmh", ("engagement",), partitioned=True),
    ModelSpec("MTMH (DAT serving)", "mtmh", ("engagement", "relevance"), partitioned=True),
)


@dataclass(frozen=True)
class EvalUser:
    user_id: int
    history: np.ndarray  # T1 items, oldest first
    triggers: np.ndarray  # most recent distinct T1 items, most recent first
    truth: frozenset[int]  # T2 items to find


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
    ret, heads = source_retriever(run_dir, specs, cfg)
    spec_alphas = {s.name: alphas if len(s.heads) == 2 else alphas[:1] for s in specs}
    acc = accumulate(
        ret, specs, spec_alphas, users, ec, EvalCatalog.load(run_dir, ec.new_items_from)
    )
    ann = {
        h: ann_recall(hi.vectors, hi.index, ret.k_ann, ec)
        for h, hi in heads.items()
        if not isinstance(hi, NeighborHead)  # a peer's table is exact by construction
    }
    out = {}
    for spec in specs:
        by_ranking = {
            order: {a: acc[(order, spec.name, a)].result() for a in spec_alphas[spec.name]}
            for order in RANKINGS
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


def source_retriever(
    run_dir: Path, specs: list[ModelSpec], cfg: RunConfig
) -> tuple[Retriever, dict[str, Any]]:
    """The Retriever over the one group of `specs` (a source, searched one way), with its
    preranker, and its heads."""
    groups = {spec.group for spec in specs}
    if len(groups) != 1:
        raise ValueError(f"evaluate_source takes specs of one group, got {sorted(groups)}")
    source, partitioned = specs[0].group
    preranker = load_preranker(run_dir, source)
    # Every head the preranker reads is searched, even for a one-head row (MTMH-H1): its
    # features include the other head's view of each candidate.
    all_heads = tuple(sorted({h for spec in specs for h in spec.heads} | set(preranker.heads)))
    heads = served_heads(
        run_dir, source, all_heads, cfg.clusters, partitioned, use_gpu=cfg.index.use_gpu
    )
    num_items = next(iter(heads.values())).vectors.shape[0]
    ec = cfg.eval
    ret = Retriever(
        heads,
        ec.k_ann_for(num_items),
        ec.keep_per_head,
        preranker,
        ec.relevance_k_ann_for(num_items),
    )
    return ret, heads


def accumulate(
    ret: Retriever,
    specs: list[ModelSpec],
    spec_alphas: dict[str, list[float]],
    users: list[EvalUser],
    ec: EvalConfig,
    catalog: EvalCatalog,
) -> dict[tuple[str, str, float], OrderMetrics]:
    """{(order, model row, alpha): its metrics over `users`}, one user at a time: no user's
    candidate lists outlive its metrics."""
    acc: dict[tuple[str, str, float], OrderMetrics] = {
        (order, s.name, alpha): OrderMetrics(ec, catalog)
        for order in RANKINGS
        for s in specs
        for alpha in spec_alphas[s.name]
    }
    for u in users:
        seen = u.history if ec.exclude_seen else ()
        searched = ret.search(u.triggers, seen)
        kept = {order: ret.ordered(order, u.triggers, seen, searched) for order in RANKINGS}
        for order, order_kept in kept.items():
            for s in specs:
                spec_kept = {h: order_kept[h] for h in s.heads}
                for alpha in spec_alphas[s.name]:
                    per_trigger = ret.merge(spec_kept, alpha, order)  # type: ignore[arg-type]
                    acc[(order, s.name, alpha)].add(u, per_trigger, order)
    return acc


class OrderMetrics:
    """One (order, model row, alpha)'s metrics, a user at a time: recall@K and NDCG@20 of the
    pooled list (with standard errors over users), topic match of the merged per-trigger
    lists, and the mean number of unique candidates a user's triggers pool (before the top_k
    cut)."""

    def __init__(self, ec: EvalConfig, catalog: EvalCatalog) -> None:
        self.top_k = ec.top_k
        self.recall = RecallMean(tuple(ec.recall_at))
        self.match = {
            lv: MatchCounter(t.labels, t.random_probability) for lv, t in catalog.levels.items()
        }
        self.diversity = DiversityMeter(catalog)
        self.cold = None
        if catalog.new is not None:
            self.cold = ColdStartMeter(catalog.new, ec.recall_at, catalog.levels)
        self.unique = 0

    def add(self, user: EvalUser, per_trigger: list[list[Candidate]], order: str) -> None:
        for trigger, row in zip(user.triggers, per_trigger, strict=True):
            items = [c.item_id for c in row]
            for counter in self.match.values():
                counter.add(int(trigger), items)
            if self.cold is not None:
                self.cold.add_trigger(int(trigger), items)
        self.unique += len({c.item_id for row in per_trigger for c in row})
        pooled = [item for item, _ in pool(per_trigger, self.top_k, POOLING[order])]
        self.recall.add(pooled, set(user.truth))
        self.diversity.add(pooled)
        if self.cold is not None:
            self.cold.add(pooled, user.truth)

    def result(self) -> dict[str, float]:
        users = self.recall.users
        return {
            **{f"recall@{k}": v for k, v in self.recall.means().items()},
            **{f"recall@{k}_se": v for k, v in self.recall.standard_errors().items()},
            **self.recall.ndcg(),
            **{
                f"{lvl}_{name}": value
                for lvl, counter in self.match.items()
                for name, value in (
                    ("match", counter.rate),
                    ("random", counter.random_rate),
                    ("lift", lift(counter.rate, counter.random_rate)),
                )
            },
            "unique_candidates": self.unique / users if users else float("nan"),
            **self.diversity.result(),
            **(self.cold.result() if self.cold is not None else {}),
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
        out[f"recall@{k}"] = recall_at(truth, found)
    return out
