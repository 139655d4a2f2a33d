"""Evaluate every model of a run with one protocol and write the report.

Each model is evaluated by its own Ray task (they share nothing but the sampled users, put in
the object store once), so models run side by side on the cluster's CPUs.

Before the test period is touched, the serving order is settled on the validation split
(`eval.ranking=auto`): MTMH's validation recall with its preranker against ANN order, through
the same index, K_ann and pooling as the test period, on the half of the validation users the
preranker did not learn on. The report's headline rows use the chosen order; both orders'
rows are kept.

Example:
    report = evaluate_run(cfg, Path("runs/ml-100k"))   # also writes report.{json,md} + PNGs
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtmh.clusters.artifact import has_clusters, load_clusters
from mtmh.config import RunConfig, config_to_dict
from mtmh.embeddings import EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.eval.cold_start import new_items
from mtmh.eval.content_quality import neighbour_lifts
from mtmh.eval.diversity_curve import curve_point, report_settings
from mtmh.eval.fresh import fresh_convergence
from mtmh.eval.protocol import (
    REPORT_MODELS,
    ModelSpec,
    evaluate_source,
    holdout_users,
    sample_users,
)
from mtmh.eval.report import write_report
from mtmh.eval.topic_match import label_sets
from mtmh.holdout import validation_score
from mtmh.index.artifact import index_dir, read_meta
from mtmh.model.curves import read_metrics
from mtmh.peers.build import PEERS, peer_dir
from mtmh.preranker.train import fit_split
from mtmh.progress import steps
from mtmh.retrieval.ranking import RANKING_FILE, RANKINGS
from mtmh.retrieval.served import is_prompted

MTMH_SPEC = ModelSpec("MTMH", "mtmh", ("engagement", "relevance"))
CURVE_SPEC = ModelSpec("MTMH-H1", "mtmh", ("engagement",))  # the diversity-recall curve's

log = logging.getLogger(__name__)


def index_settings(run_dir: Path, ann: dict[str, Any]) -> dict[str, str]:
    """{"<model>/<head>": its index's family and search setting} (from meta.json), for the
    rows of the ANN-recall table; peers' neighbour tables have no index."""
    out = {}
    for name in ann:
        model, head = name.split("/", 1)
        folder = index_dir(run_dir, model, head)
        if (folder / "meta.json").is_file():
            meta = read_meta(folder)
            # An index built without autotune records only its nprobe.
            setting = meta.search_params or (f"nprobe={meta.nprobe}" if meta.nprobe else "")
            out[name] = f"{meta.kind} {setting}".strip()
    return out


def available_models(run_dir: Path, specs: tuple[ModelSpec, ...]) -> list[ModelSpec]:
    out = []
    for spec in specs:
        if spec.partitioned and not has_clusters(run_dir):
            log.warning("%s: the run has no clusters, left out of the report", spec.name)
            continue
        try:
            if spec.source in PEERS:
                table = peer_dir(run_dir, spec.source) / "neighbors.npz"
                if not table.is_file():
                    raise FileNotFoundError(table)
            else:
                EmbeddingSource.named(run_dir, spec.source)
        except FileNotFoundError:
            log.warning("%s: no embeddings for %r, left out of the report", spec.name, spec.source)
            continue
        out.append(spec)
    return out


def choose_ranking(cfg: RunConfig, run_dir: Path, models: list[ModelSpec]) -> dict[str, Any]:
    """{"chosen": order, "how": ..., "validation": {order: metrics}}; written to
    RUN/eval/ranking.json for the sweep and the Serve app."""
    ec = cfg.eval
    info: dict[str, Any] = {"chosen": ec.ranking, "how": "eval.ranking in the config"}
    if ec.ranking == "auto":
        _, split = fit_split(cfg, run_dir)
        if not split or MTMH_SPEC not in models:
            info = {
                "chosen": "preranker",
                "how": "auto, but no validation split or no MTMH: the spec's default",
            }
        else:
            res = evaluate_source(run_dir, [MTMH_SPEC], cfg, holdout_users(split), [ec.alpha])
            val = {o: res["MTMH"]["by_ranking"][o][ec.alpha] for o in RANKINGS}
            chosen = max(RANKINGS, key=lambda o: validation_score(val[o]))
            info = {
                "chosen": chosen,
                "how": f"auto: the better mean of recall@100 and @500 of MTMH at alpha "
                f"{ec.alpha:g} on {len(split)} validation users the preranker did not learn on",
                "validation": val,
            }
    folder = run_dir / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RANKING_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


def validation_curves(run_dir: Path, models: list[ModelSpec]) -> dict[str, dict[str, Any]]:
    """{source: {"epochs": [...], "score": [...], "best_epoch": e}} from each training's
    metrics.jsonl (the rows its validation wrote)."""
    out: dict[str, dict[str, Any]] = {}
    for source in dict.fromkeys(s.source for s in models):
        path = run_dir / "models" / source / "metrics.jsonl"
        if source in PEERS or not path.is_file():
            continue
        rows = [r for r in read_metrics(path) if "val/score" in r]
        if rows:
            out[source] = {
                "epochs": [int(r["epoch"]) for r in rows],
                "steps": [int(r["step"]) for r in rows],
                "score": [r["val/score"] for r in rows],
                "best_epoch": int(rows[-1]["val/best_epoch"]),
            }
    return out


def peer_metas(run_dir: Path) -> dict[str, Any]:
    """{peer: its meta.json} for the classic peers the run has."""
    metas = {name: peer_dir(run_dir, name) / "meta.json" for name in PEERS}
    return {name: json.loads(path.read_text()) for name, path in metas.items() if path.is_file()}


def _clusters_meta(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The clusters' meta, with how the partitioned rows (DAT, "(DAT serving)") searched."""
    if not has_clusters(run_dir):
        return None
    cc = cfg.clusters
    search = {"visit": cc.visit, "strategy": cc.strategy, "temperature": cc.temperature}
    return {**load_clusters(run_dir)[1], "search": search}


def topic_levels(run_dir: Path) -> dict[str, dict[str, float]]:
    """Per level: items with a label, and the random-pair match rate over the catalog."""
    out = {}
    for level, t in label_sets(run_dir).items():
        p = t.random_probability[~np.isnan(t.random_probability)]
        out[level] = {
            "labelled_items": len(p),
            "random_pair_rate": float(p.mean()) if len(p) else float("nan"),
        }
    return out


def evaluate_run(
    cfg: RunConfig, run_dir: Path, specs: tuple[ModelSpec, ...] = REPORT_MODELS
) -> dict[str, Any]:
    """Evaluate every available model of `specs` on T2 and write the report.

    Every model is evaluated in both orders (ANN and preranker) in one Ray task per embedding
    source; the choice of the served order runs beside them as one more task, on validation
    users, and picks which order the report's main rows show."""
    import ray

    started = time.perf_counter()
    ec = cfg.eval
    users = sample_users(run_dir, ec)
    if not users:
        raise ArtifactError(f"{run_dir}: no user has both T1 history and new T2 items to find")
    if not ec.partitioned_rows:
        specs = tuple(s for s in specs if not s.partitioned)
    models = available_models(run_dir, specs)
    alphas = sorted({*ec.alphas, ec.alpha})
    gpus = 1 if cfg.index.use_gpu else 0
    choice = ray.remote(choose_ranking).options(num_cpus=1, num_gpus=gpus)
    ranking_ref = choice.remote(cfg, run_dir.resolve(), models)
    curve_refs = _start_curve(cfg, run_dir, models, users)
    results = _evaluate_sources(cfg, run_dir, models, users, alphas)
    ranking = ray.get(ranking_ref)
    log.info("serving order: %s (%s)", ranking["chosen"], ranking["how"])
    for res in results.values():
        res["by_alpha"] = res["by_ranking"][ranking["chosen"]]
    report = build_report(cfg, run_dir, models, results, ranking, len(users))
    if curve_refs:
        rows = ray.get(curve_refs)
        report["diversity_curve"] = {"model": CURVE_SPEC.name, "order": "ann", "rows": rows}
        report["diversity_curve"]["users"] = min(len(users), ec.diversity_curve_users)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, run_dir)
    return report


def _start_curve(
    cfg: RunConfig, run_dir: Path, models: list[ModelSpec], users: list[Any]
) -> list[Any]:
    """The diversity-recall curve's Ray tasks (MTMH's engagement head, every report setting,
    on the first eval.diversity_curve_users users); none without clusters, MTMH or users."""
    import ray

    n = cfg.eval.diversity_curve_users
    if not (n and has_clusters(run_dir) and CURVE_SPEC in models):
        return []
    clustering, _ = load_clusters(run_dir)
    task = ray.remote(curve_point).options(num_cpus=1)
    users_ref = ray.put(users[:n])
    return [
        task.remote(run_dir.resolve(), cfg, [CURVE_SPEC], users_ref, setting)
        for setting in report_settings(clustering.num_clusters)
    ]


def group_alphas(group: list[ModelSpec], alphas: list[float], alpha: float) -> list[float]:
    """The alphas a group's rows are merged at: the whole sweep for MTMH's group (the report's
    alpha sweep is MTMH's), the served alpha alone for every other group, whose other alphas
    no row of the report shows. Every merge of one alpha is the same either way."""
    return alphas if MTMH_SPEC in group else [alpha]


def _evaluate_sources(
    cfg: RunConfig,
    run_dir: Path,
    models: list[ModelSpec],
    users: list[Any],
    alphas: list[float],
) -> dict[str, dict[str, Any]]:
    """{model name: its results}: one Ray task per embedding source (MTMH, MTMH-H1 and
    MTMH-H2 share one search and preranking)."""
    import ray

    users_ref = ray.put(users)
    task = ray.remote(evaluate_source).options(num_cpus=1, num_gpus=1 if cfg.index.use_gpu else 0)
    by_group: dict[tuple[str, bool], list[ModelSpec]] = {}
    for spec in models:
        by_group.setdefault(spec.group, []).append(spec)

    # The longest tasks go first (partitioned searches, then the most merges per user), so
    # two long tasks do not end the stage on one busy CPU while the other waits.
    def cost(group: list[ModelSpec]) -> tuple[bool, int]:
        partitioned = any(s.partitioned or s.source in prompted for s in group)
        merges = len(group_alphas(group, alphas, cfg.eval.alpha))
        return not partitioned, -sum(merges if len(s.heads) == 2 else 1 for s in group)

    prompted = {s.source for s in models if is_prompted(run_dir, s.source)}
    pending = {
        task.remote(
            run_dir.resolve(), group, cfg, users_ref, group_alphas(group, alphas, cfg.eval.alpha)
        ): group[0].name
        for group in sorted(by_group.values(), key=cost)
    }
    results: dict[str, dict[str, Any]] = {}
    with steps(f"evaluating {len(models)} models", len(models)) as advance:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            first = pending.pop(done[0])
            batch = ray.get(done[0])
            results.update(batch)
            log.info("evaluated %s", ", ".join(batch) or first)
            advance(len(batch))
    return results


def _new_items_meta(run_dir: Path, arrived_from: int | None) -> dict[str, int | None]:
    """How many catalog items are new (mtmh/eval/cold_start.py), of how many; how many of
    them have no T1 interaction, and from which id on items count as arrived."""
    counts = pq.read_table(run_dir / "data" / "items.parquet", columns=["t1_interactions"])
    t1 = counts["t1_interactions"].to_numpy()
    new = new_items(t1, arrived_from)
    unseen = int(new_items(t1).sum())
    return {"new": int(new.sum()), "catalog": len(new), "unseen": unseen, "from": arrived_from}


def build_report(
    cfg: RunConfig,
    run_dir: Path,
    models: list[ModelSpec],
    results: dict[str, dict[str, Any]],
    ranking: dict[str, Any],
    num_users: int,
) -> dict[str, Any]:
    """report.json's content, models in the paper's row order."""
    ec = cfg.eval
    report_models = {}
    by_ranking: dict[str, dict[str, Any]] = {o: {} for o in RANKINGS}
    ann: dict[str, dict[str, float]] = {}
    for spec in models:
        res = results[spec.name]
        by_alpha = res["by_alpha"]
        report_models[spec.name] = by_alpha.get(ec.alpha, next(iter(by_alpha.values())))
        for order, rows in res["by_ranking"].items():
            by_ranking[order][spec.name] = rows.get(ec.alpha, next(iter(rows.values())))
        for head, rec in res["ann_recall"].items():
            ann[f"{spec.source}/{head}"] = rec
    mtmh = results.get("MTMH")
    report = {
        "dataset": cfg.data.dataset,
        "config": config_to_dict(cfg),
        "protocol": {
            "users": num_users,
            "max_triggers": ec.max_triggers,
            "k_ann": next(iter(results.values()))["k_ann"],
            "keep_per_head": ec.keep_per_head,
            "top_k": ec.top_k,
            "alpha": ec.alpha,
            "exclude_seen": ec.exclude_seen,
            "ranking": ranking["chosen"],
            "index_family": cfg.index.family,
            "index_target_recall": cfg.index.target_recall if cfg.index.autotune else None,
        },
        "ranking": ranking,
        "models": report_models,
        "models_by_ranking": by_ranking,
        "alpha_sweep": [{"alpha": a, **mtmh["by_alpha"][a]} for a in ec.alphas] if mtmh else [],
        "alpha_sweep_by_ranking": {
            o: [{"alpha": a, **mtmh["by_ranking"][o][a]} for a in ec.alphas] for o in RANKINGS
        }
        if mtmh
        else {},
        "validation_curves": validation_curves(run_dir, models),
        "peers": peer_metas(run_dir),
        "ann_recall": ann,
        "index_settings": index_settings(run_dir, ann),
        "topic_levels": topic_levels(run_dir),
        "clusters": _clusters_meta(cfg, run_dir),
        "new_items": _new_items_meta(run_dir, cfg.eval.new_items_from),
        "neighbour_lift": neighbour_lifts(run_dir),
        "fresh_convergence": fresh_convergence(run_dir),
        "model_versions": {name: r["model_version"] for name, r in results.items()},
    }
    return report
