"""Fitting one preranker per model of a run, each in its own Ray task.

`fit_prerankers(cfg, run_dir)` builds the item statistics of the training log once, takes the
fit half of the validation split (mtmh/holdout.py `HoldoutSplit.halves`), and for every
model with embeddings or a neighbour table runs `fit_model_preranker`: the real ANN stage for
those users, labelled rows (mtmh/preranker/examples.py), and a few epochs of Adam on the
weighted binary losses. A share of the fit users (`preranker.check_fraction`) only scores each
epoch; the best epoch's weights are kept. Writes RUN/preranker/ (see ranker.py) and
RUN/preranker/summary.json.

The rows are small (at most `preranker.max_examples`, a few dozen floats each), so a model
trains in seconds to a minute on one CPU; the models train side by side as Ray tasks.

Example:
    fit_prerankers(cfg, Path("runs/ml-100k"))
    pre = load_preranker(Path("runs/ml-100k"), "mtmh")
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mtmh.config import RunConfig
from mtmh.errors import MtmhError
from mtmh.holdout import HoldoutSplit, HoldoutUser, load_holdout
from mtmh.model.harness import EarlyStopping
from mtmh.preranker.examples import Examples, build_examples
from mtmh.preranker.features import feature_names
from mtmh.preranker.item_stats import STATS_FILE, ItemLog
from mtmh.preranker.model import PrerankerModel
from mtmh.preranker.ranker import Preranker, preranker_dir, save_preranker
from mtmh.retrieval.heads import model_heads
from mtmh.retrieval.retriever import Retriever
from mtmh.retrieval.served import served_heads

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"
_SUMMARY_LOCK = threading.Lock()  # one read-modify-write of summary.json at a time


class PrerankerTrainingFailed(MtmhError, RuntimeError):
    """A preranker could not be fitted (no validation users, or a model's task failed)."""


def catalog_size(run_dir: Path) -> int:
    return pq.read_metadata(run_dir / "data" / "items.parquet").num_rows


def fit_split(cfg: RunConfig, run_dir: Path) -> tuple[HoldoutSplit, HoldoutSplit]:
    """(fit, choose): the validation users the prerankers learn on, and those the serving
    order is chosen on (the same halves for every model)."""
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    return split.halves(cfg.holdout.seed, cfg.preranker.fit_fraction)


def _weighted_logloss(model: PrerankerModel, ex: Examples) -> float:
    with torch.no_grad():
        x = torch.as_tensor(ex.features)
        losses = model.losses(
            x,
            torch.as_tensor(ex.engaged),
            torch.as_tensor(ex.satisfied),
            torch.as_tensor(ex.weight),
        )
    return float(losses["engagement"])


def _train_epoch(
    model: PrerankerModel, opt: torch.optim.Optimizer, ex: Examples, batch_size: int
) -> float:
    """One pass over `ex` in a random order; the mean training loss."""
    x = torch.as_tensor(ex.features)
    engaged, satisfied = torch.as_tensor(ex.engaged), torch.as_tensor(ex.satisfied)
    weight = torch.as_tensor(ex.weight)
    order = torch.randperm(len(x))
    total = 0.0
    for start in range(0, len(x), batch_size):
        b = order[start : start + batch_size]
        losses = model.losses(x[b], engaged[b], satisfied[b], weight[b])
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        total += float(losses["loss"].detach()) * len(b)
    return total / max(len(x), 1)


def train_model(
    examples: Examples, cfg: RunConfig, users: list[HoldoutUser]
) -> tuple[PrerankerModel, dict[str, Any]]:
    """A PrerankerModel fitted on `examples`; the check users' rows pick the best epoch."""
    pc = cfg.preranker
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ids = np.array(sorted(u.user_id for u in users), np.int64)
    n_check = round(pc.check_fraction * len(ids)) if len(ids) > 1 else 0
    check_ids = rng.choice(ids, n_check, replace=False) if n_check else ids[:0]
    is_check = np.isin(examples.user, check_ids)
    train, check = examples.where(~is_check), examples.where(is_check)
    x = torch.as_tensor(train.features)
    engaged, satisfied = torch.as_tensor(train.engaged), torch.as_tensor(train.satisfied)
    weight = torch.as_tensor(train.weight)
    model = PrerankerModel(x.shape[1], pc.hidden_dim, pc.satisfaction_weight)
    rate = float((engaged * weight).sum() / weight.sum())
    model.set_scaling(x, rate)
    positives = satisfied[engaged > 0]
    model.has_satisfaction.fill_(bool(len(positives)) and 0 < float(positives.mean()) < 1)
    opt = torch.optim.Adam(model.parameters(), lr=pc.lr)
    curve: list[dict[str, float]] = []
    # The training harness's keeper of the best epoch's weights (it never stops early here):
    # the best check logloss wins, or without check users the last epoch.
    keeper = EarlyStopping(patience=pc.epochs + 1)
    if len(check):
        curve.append({"epoch": 0, "check_logloss": _weighted_logloss(model, check)})
        keeper.update(-curve[0]["check_logloss"], 0, model)
    for epoch in range(1, pc.epochs + 1):
        row = {"epoch": epoch, "train_loss": _train_epoch(model, opt, train, pc.batch_size)}
        if len(check):
            row["check_logloss"] = _weighted_logloss(model, check)
        keeper.update(-row["check_logloss"] if len(check) else float(epoch), epoch, model)
        curve.append(row)
    if keeper.best_state is not None:
        model.load_state_dict(keeper.best_state)
    best_loss = -keeper.best_score if len(check) else np.inf
    summary = {
        "rows": len(examples),
        "positives": int(examples.engaged.sum()),
        "train_users": len(ids) - n_check,
        "check_users": n_check,
        "satisfaction_task": bool(model.has_satisfaction),
        "best_check_logloss": None if np.isinf(best_loss) else best_loss,
        "curve": curve,
    }
    return model.eval(), summary


def fit_model_preranker(
    run_dir: Path, source: str, cfg: RunConfig, users: list[HoldoutUser], item_log: ItemLog
) -> dict[str, Any]:
    """Fit and save the preranker of one model; returns its summary."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.preranker.threads)
    import faiss

    faiss.omp_set_num_threads(cfg.preranker.threads)
    order = model_heads(run_dir, source)
    # The heads as the model serves (a prompted model cluster by cluster): the preranker
    # learns on the candidates it will rank.
    heads = served_heads(run_dir, source, order, cfg.clusters, use_gpu=cfg.index.use_gpu)
    k_ann = cfg.eval.k_ann_for(item_log.num_items)
    retriever = Retriever(heads, k_ann, cfg.eval.keep_per_head)  # sets nprobe to cover K_ann
    examples = build_examples(retriever, order, users, item_log, cfg)
    model, summary = train_model(examples, cfg, users)
    summary = {
        "features": feature_names(order),
        **summary,
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_preranker(run_dir, source, Preranker(model, order, item_log.at(item_log.end)), summary)
    log.info(
        "preranker %s: %d rows, %d positives, %.1f s",
        source,
        summary["rows"],
        summary["positives"],
        summary["seconds"],
    )
    return summary


def _prepare(cfg: RunConfig, run_dir: Path) -> tuple[HoldoutSplit, HoldoutSplit, ItemLog]:
    """The fit and choose halves and the training log's item statistics (also saved to
    RUN/preranker/item_stats.npz, the snapshot serving reads)."""
    split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    fit, choose = split.halves(cfg.holdout.seed, cfg.preranker.fit_fraction)
    if not fit:
        raise PrerankerTrainingFailed(
            f"{run_dir}: the preranker learns on validation users and there are none "
            "(holdout.users=0, or no user has enough T1 history)"
        )
    item_log = ItemLog.from_run(run_dir, split, catalog_size(run_dir))
    out = preranker_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    item_log.at(item_log.end).save(out / STATS_FILE)  # atomic: sweep trials may be reading it
    return fit, choose, item_log


def fit_preranker(cfg: RunConfig, run_dir: Path, source: str) -> dict[str, Any]:
    """Fit one model's preranker in this process (a sweep trial's new model)."""
    fit, _, item_log = _prepare(cfg, run_dir)
    return fit_model_preranker(run_dir, source, cfg, fit.users, item_log)


def fit_prerankers(
    cfg: RunConfig, run_dir: Path, sources: list[str] | None = None, in_process: bool = False
) -> dict[str, Any]:
    """Fit the preranker of every model in `sources` (default: every model of the run with
    embeddings or a neighbour table): side by side as Ray tasks, or one after another in this
    process (`in_process`: the pipeline's fits beside the trainings, whose workers hold the
    CPUs a task would wait for). A source with nothing to search (EASE over too large a
    catalog) is skipped and says so. Each model's summary goes to its meta.json and into
    RUN/preranker/summary.json, beside the other models' fitted before."""
    import ray

    from mtmh.progress import steps

    fittable = available_sources(run_dir)
    sources = sources if sources is not None else fittable
    started = time.perf_counter()
    fit, choose, item_log = _prepare(cfg, run_dir)
    models: dict[str, Any] = {
        s: {"skipped": "no neighbour table or index to search"}
        for s in sources
        if s not in fittable
    }
    todo = [s for s in sources if s in fittable]
    with steps(f"fitting {len(todo)} prerankers", len(todo)) as advance:
        if in_process:
            for source in todo:
                models[source] = _fitted(
                    source, fit_model_preranker, run_dir, source, cfg, fit.users, item_log
                )
                advance(1)
        else:
            task = ray.remote(fit_model_preranker).options(
                num_cpus=cfg.preranker.cpus, num_gpus=1 if cfg.index.use_gpu else 0
            )
            users_ref, log_ref = ray.put(fit.users), ray.put(item_log)
            pending = {task.remote(run_dir.resolve(), s, cfg, users_ref, log_ref): s for s in todo}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                source = pending.pop(done[0])
                models[source] = _fitted(source, ray.get, done[0])
                advance(1)
    path = preranker_dir(run_dir) / SUMMARY_FILE
    with _SUMMARY_LOCK:  # the pipeline fits beside the trainings and after them at once
        earlier = json.loads(path.read_text())["models"] if path.is_file() else {}
        summary = {
            "fit_users": len(fit),
            "choose_users": len(choose),
            "seconds": round(time.perf_counter() - started, 1),
            "models": {**earlier, **{s: models[s] for s in sources}},
        }
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _fitted(source: str, fit: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`fit(*args)`, a failure named by the model whose preranker it was."""
    try:
        return fit(*args)
    except Exception as err:
        raise PrerankerTrainingFailed(f"preranker of {source!r}: {err}") from err


def available_sources(run_dir: Path) -> list[str]:
    """Every model of the run that can be searched: fitted peers, and the embedding sources
    (the content encoder, trained variants) whose every head has an index."""
    from mtmh.embeddings import CONTENT_SOURCE
    from mtmh.index.artifact import index_dir
    from mtmh.peers.build import NEIGHBORS_FILE, PEERS, peer_dir

    out = [p for p in PEERS if (peer_dir(run_dir, p) / NEIGHBORS_FILE).is_file()]
    models = run_dir / "models"
    variants = sorted(d.name for d in models.iterdir()) if models.is_dir() else []
    for source in [CONTENT_SOURCE, *variants]:
        try:
            heads = model_heads(run_dir, source)
        except FileNotFoundError:
            continue
        if all((index_dir(run_dir, source, h) / "meta.json").is_file() for h in heads):
            out.append(source)
    return out
