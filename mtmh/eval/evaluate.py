"""Evaluate every model of a run with one protocol and write the report.

Each model is evaluated by its own Ray task (they share nothing but the sampled users, put in
the object store once), so models run side by side on the cluster's CPUs.

Example:
    report = evaluate_run(cfg, Path("runs/ml-100k"))   # also writes report.{json,md} + PNGs
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from mtmh.config import RunConfig, config_to_dict
from mtmh.embeddings import EmbeddingSource
from mtmh.eval.fresh import fresh_convergence
from mtmh.eval.protocol import REPORT_MODELS, ModelSpec, evaluate_source, sample_users
from mtmh.eval.report import write_report

log = logging.getLogger(__name__)


def available_models(run_dir: Path, specs: tuple[ModelSpec, ...]) -> list[ModelSpec]:
    out = []
    for spec in specs:
        try:
            EmbeddingSource.named(run_dir, spec.source)
        except FileNotFoundError:
            log.warning("%s: no embeddings for %r, left out of the report", spec.name, spec.source)
            continue
        out.append(spec)
    return out


def evaluate_run(
    cfg: RunConfig, run_dir: Path, specs: tuple[ModelSpec, ...] = REPORT_MODELS
) -> dict[str, Any]:
    import ray

    started = time.perf_counter()
    ec = cfg.eval
    users = sample_users(run_dir, ec)
    if not users:
        raise ValueError(f"{run_dir}: no user has both T1 history and new T2 items to find")
    models = available_models(run_dir, specs)
    alphas = sorted({*ec.alphas, ec.alpha})
    users_ref = ray.put(users)
    task = ray.remote(evaluate_source).options(num_cpus=1, num_gpus=1 if cfg.index.use_gpu else 0)
    # One task per embedding source: MTMH, MTMH-H1 and MTMH-H2 share one search and preranking.
    by_source: dict[str, list[ModelSpec]] = {}
    for spec in models:
        by_source.setdefault(spec.source, []).append(spec)
    pending = {
        task.remote(run_dir.resolve(), group, cfg, users_ref, alphas): source
        for source, group in by_source.items()
    }
    results: dict[str, dict[str, Any]] = {}
    with Progress() as progress:
        bar = progress.add_task(f"evaluating {len(models)} models", total=len(models))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            source = pending.pop(done[0])
            batch = ray.get(done[0])
            results.update(batch)
            progress.update(bar, advance=len(batch), description=f"evaluated {source}")
    report_models = {}
    ann: dict[str, dict[str, float]] = {}
    for spec in models:  # the paper's row order
        res = results[spec.name]
        by_alpha = res["by_alpha"]
        report_models[spec.name] = by_alpha.get(ec.alpha, next(iter(by_alpha.values())))
        for head, rec in res["ann_recall"].items():
            ann[f"{spec.source}/{head}"] = rec
    mtmh = results.get("MTMH")
    report = {
        "dataset": cfg.data.dataset,
        "config": config_to_dict(cfg),
        "protocol": {
            "users": len(users),
            "max_triggers": ec.max_triggers,
            "k_ann": next(iter(results.values()))["k_ann"],
            "keep_per_head": ec.keep_per_head,
            "top_k": ec.top_k,
            "alpha": ec.alpha,
            "exclude_seen": ec.exclude_seen,
            "nprobe": cfg.index.nprobe,
        },
        "models": report_models,
        "alpha_sweep": [{"alpha": a, **mtmh["by_alpha"][a]} for a in ec.alphas] if mtmh else [],
        "ann_recall": ann,
        "fresh_convergence": fresh_convergence(run_dir),
        "model_versions": {name: r["model_version"] for name, r in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_report(report, run_dir)
    return report
