"""Fit the classic peers on a run's training interactions and save each one's item-item
neighbour table, which stands in for the ANN search in the evaluation.

    RUN/peers/<name>/neighbors.npz   ids [N, K] int32 and scores [N, K] float32, best first
                                     (the item itself excluded), K = K_ann + 1
    RUN/peers/<name>/meta.json       what was fitted: lambda, validation recall, seconds

EASE's lambda is chosen on the validation split (mtmh/holdout.py) by the same ANN-order
recall that stops the learned models' training: never on T2.

Example:
    metas = build_peers(cfg, Path("runs/ml-1m"))   # {"itemknn": {...}, "ease": {...}}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mtmh.config import EvalConfig, RunConfig
from mtmh.holdout import HoldoutSplit, ann_order_recall, load_holdout, validation_score
from mtmh.index.faiss_index import search_k
from mtmh.peers.ease import EASE, gram
from mtmh.peers.interactions import training_matrix
from mtmh.peers.itemknn import ItemKNN

log = logging.getLogger(__name__)

PEERS = {"itemknn": "ItemKNN", "ease": "EASE"}  # source name -> report name
NEIGHBORS_FILE = "neighbors.npz"
META_FILE = "meta.json"


def peer_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "peers" / name


def neighbor_count(ec: EvalConfig, num_items: int) -> int:
    """The width of a peer's neighbour table: what an index search is asked for
    (`search_k`), and at most N - 1 since an item is never in its own row."""
    return min(search_k(ec.k_ann_for(num_items), num_items), num_items - 1)


@torch.no_grad()
def neighbor_table(
    scores: Callable[[np.ndarray], torch.Tensor], num_items: int, k: int, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N, k] int32, scores [N, k] float32): each item's k best other items."""
    ids = np.empty((num_items, k), np.int32)
    vals = np.empty((num_items, k), np.float32)
    for start in range(0, num_items, block):
        rows = np.arange(start, min(num_items, start + block))
        s = scores(rows).clone()
        s[torch.arange(len(rows)), torch.as_tensor(rows)] = -torch.inf
        top = s.topk(k, dim=1)
        ids[rows], vals[rows] = top.indices.numpy(), top.values.numpy()
    return ids, vals


def _save(
    run_dir: Path, name: str, ids: np.ndarray, vals: np.ndarray, meta: dict[str, Any]
) -> None:
    folder = peer_dir(run_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / NEIGHBORS_FILE, ids=ids, scores=vals)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def build_peers(cfg: RunConfig, run_dir: Path) -> dict[str, dict[str, Any]]:
    """Fit ItemKNN and (up to `peers.ease_max_items`) EASE; returns their metadata."""
    num_items = pq.read_metadata(run_dir / "data" / "items.parquet").num_rows
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    x = training_matrix(run_dir, num_items, split)
    k = neighbor_count(cfg.eval, num_items)
    out: dict[str, dict[str, Any]] = {}

    started = time.perf_counter()
    knn = ItemKNN(x)
    ids, vals = neighbor_table(knn.scores, num_items, k)
    out["itemknn"] = {
        "name": "ItemKNN",
        "similarity": "cosine",
        "val_recall": ann_order_recall(
            knn.scores, split, keep=cfg.eval.keep_per_head, top_k=cfg.eval.top_k
        )
        if split
        else {},
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save(run_dir, "itemknn", ids, vals, out["itemknn"])

    if num_items > cfg.peers.ease_max_items:
        reason = (
            f"{num_items} items > peers.ease_max_items={cfg.peers.ease_max_items}: "
            "EASE's dense N x N inverse is not fitted"
        )
        log.warning("EASE skipped: %s", reason)
        out["ease"] = {"name": "EASE", "skipped": reason}
        folder = peer_dir(run_dir, "ease")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / NEIGHBORS_FILE).unlink(missing_ok=True)
        (folder / META_FILE).write_text(json.dumps(out["ease"], indent=2) + "\n")
        return out
    started = time.perf_counter()
    g = gram(x)
    best, curve = _choose_lambda(g, split, cfg.peers.ease_lambdas, cfg.eval)
    ids, vals = neighbor_table(best.scores, num_items, k)
    out["ease"] = {
        "name": "EASE",
        "lambda": best.lam,
        "lambda_curve": curve,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save(run_dir, "ease", ids, vals, out["ease"])
    return out


def _choose_lambda(
    g: np.ndarray, split: HoldoutSplit, lambdas: tuple[float, ...], ec: EvalConfig
) -> tuple[EASE, list[dict[str, Any]]]:
    """The lambda with the best validation recall (the first one when there is no split)."""
    if not split:
        return EASE(g, lambdas[0]), []
    best: EASE | None = None
    best_score = -np.inf
    curve = []
    for lam in lambdas:
        model = EASE(g, lam)
        recall = ann_order_recall(model.scores, split, keep=ec.keep_per_head, top_k=ec.top_k)
        score = validation_score(recall)
        curve.append({"lambda": lam, **{f"recall@{k}": v for k, v in recall.items()}})
        log.info("EASE lambda %g: validation recall %s", lam, recall)
        if score > best_score:
            best, best_score = model, score
    assert best is not None
    if len(lambdas) > 1 and best.lam in (min(lambdas), max(lambdas)):
        log.warning(
            "EASE's best validation lambda %g is at the edge of peers.ease_lambdas %s: "
            "a better one may lie beyond it",
            best.lam,
            list(lambdas),
        )
    return best, curve
