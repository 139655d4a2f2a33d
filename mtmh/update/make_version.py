"""`mtmh update RUN --logs PATH [--items PATH]`: a new model version from the serving one and a
slice of new logs and catalog rows, written beside it (RUN/versions/<n>/, mtmh/versions.py).

1. prepare reads the serving version's dataset with the slice after it (`parquet:BASE+SLICE`),
   validating and quarantining the new rows as any prepare does; every earlier item keeps its
   id, the new ones come after, and the quantile split moves forward with the log;
2. the content encoder and the unchanged items' vectors are carried over, and only the new or
   changed items are embedded (mtmh/update/carry.py); content clusters are carried too, the
   new items joining their nearest centroid;
3. the rest is the pipeline on the version's folder: the served models (`update.variants`)
   warm-start from the serving version's (`train.init_from`, `update.epochs` epochs; new
   items' id rows copied from their content-nearest trained item) on the pairs after the
   serving version's T1 cut (`update.window`), then their indexes, prerankers and the
   evaluation on the newest held-out window (`update.report`: the served rows and their
   peers; EASE's lambda and the served order kept from the serving version,
   `update.reuse_choices`);
4. the gate (mtmh/update/gate.py) compares each gated model with itself before the update, and
   a version that passes is promoted: RUN/serving.json names it, and Serve follows.

Every trained head's vectors move in a warm start, so its index is rebuilt, not appended to;
the content index is rebuilt too (seconds, against the embedding it saves).

Example:
    record = make_version(Path("runs/days"), Path("data/days/slice-01"))
    record["gate"]["passed"], record["promoted"]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from mtmh.clusters.artifact import has_clusters
from mtmh.config import ConfigError, RunConfig, load_config, save_config
from mtmh.data.sources.parquet import ParquetSource
from mtmh.embeddings import CONTENT_SOURCE
from mtmh.model.train_loop import model_name
from mtmh.peers.build import META_FILE, peer_dir
from mtmh.pipeline import plan, run_pipeline, variant_config
from mtmh.retrieval.ranking import resolved_ranking
from mtmh.stage_board import StageBoard
from mtmh.update.carry import carry_clusters, carry_content
from mtmh.update.gate import gate
from mtmh.versions import next_version, promote, serving_version, version_dir, write_version

log = logging.getLogger(__name__)
PARQUET = "parquet:"
SUMMARY_KEYS = ("recall@20", "recall@500", "cold_recall@500", "cold_users", "cold_share")


def slice_folder(out: Path, logs: Path, items: Path | None, base: Path) -> Path:
    """The new slice as a `parquet:` folder. `logs` is one already (items.parquet beside its
    interactions) unless `items` is given or it holds only logs; then OUT/input links the
    logs and holds `items` (or an empty catalog: no new items) next to them."""
    logs = logs.resolve()
    if not logs.exists():
        raise FileNotFoundError(f"--logs {logs}: not found")
    has_items = (logs / "items.parquet").exists() or (logs / "items").is_dir()
    if logs.is_dir() and has_items and items is None:
        return logs
    folder = out / "input"
    folder.mkdir(parents=True, exist_ok=True)
    if logs.is_file():
        link = folder / f"interactions{logs.suffix}"
    else:
        inner = [p for p in logs.iterdir() if p.name.startswith("interactions")]
        logs = inner[0] if inner else logs  # a slice folder's logs, or a folder of log files
        link = folder / (inner[0].name if inner else "interactions")
    if not link.exists():
        os.symlink(logs, link)
    if items is not None:
        shutil.copyfile(items, folder / "items.parquet")
    elif not (folder / "items.parquet").exists():
        base_items = base / "items.parquet"
        pq.write_table(pq.read_schema(base_items).empty_table(), folder / "items.parquet")
    return folder


def check_updatable(parent: RunConfig, parent_dir: Path) -> None:
    if not parent.data.dataset.startswith(PARQUET):
        raise ConfigError(
            f"{parent_dir} was made from {parent.data.dataset!r}: an update appends a slice to a "
            "parquet: dataset. Cut yours into a base and slices (ray_jobs/slice_dataset.py), "
            "run the base (mtmh run --dataset parquet:OUT/base), then update it"
        )


def version_config(run: RunConfig, root: Path, parent_dir: Path, new_slice: Path) -> RunConfig:
    """The next version's config: the run's own (`run`, version 0's, so that what one update
    sets for itself never becomes the next one's setting), reading the serving version's data
    with the slice after it and warm-starting from its models."""
    parent = load_config(parent_dir / "pipeline.yaml")
    check_updatable(parent, parent_dir)
    up = run.update
    variants = tuple(v for v in run.pipeline.variants if v in up.variants)
    if not variants:
        raise ConfigError(
            f"update.variants={list(up.variants)}: none of them was trained in "
            f"{root} ({list(run.pipeline.variants)})"
        )
    ungated = [m for m in up.gate_models if m not in variants]
    if ungated:
        raise ConfigError(f"update.gate_models: {ungated} not among update.variants {variants}")
    # New items: those after the last full training's catalog.
    ec = dataclasses.replace(run.eval, new_items_from=_catalog(root))
    if up.report == "served":
        ec = dataclasses.replace(ec, partitioned_rows=False, diversity_curve_users=0)
    peers = run.peers
    if up.reuse_choices:  # the serving version's, made on its validation split
        ec = dataclasses.replace(ec, ranking=resolved_ranking(run, parent_dir))
        lam = _ease_lambda(parent_dir)
        peers = peers if lam is None else dataclasses.replace(peers, ease_lambdas=(lam,))
    return dataclasses.replace(
        run,
        pipeline=dataclasses.replace(run.pipeline, variants=variants),
        data=dataclasses.replace(run.data, dataset=f"{parent.data.dataset}+{new_slice}"),
        train=dataclasses.replace(
            run.train,
            init_from=str(parent_dir),
            epochs=up.epochs,
            pairs_since=_t1_cut(parent_dir) if up.window == "new" else None,
            lr=run.train.lr if up.lr is None else up.lr,
        ),
        eval=ec,
        peers=peers,
    )


def _t1_cut(run_dir: Path) -> int:
    """The Unix time where `run_dir`'s T1 ends (prepare's time cut): its models trained on
    nothing after it."""
    return int(json.loads((run_dir / "data" / "stats.json").read_text())["cut_timestamp"])


def _ease_lambda(run_dir: Path) -> float | None:
    """The EASE lambda `run_dir` chose on its validation split (None: no EASE fitted)."""
    meta = peer_dir(run_dir, "ease") / META_FILE
    lam = json.loads(meta.read_text()).get("lambda") if meta.is_file() else None
    return None if lam is None else float(lam)


def _carried_stages(
    cfg: RunConfig, parent_dir: Path, out: Path, console: Console
) -> dict[str, Any]:
    """prepare, then encode and the content clusters, carried over from `parent_dir`."""
    stages = {s.name: s for s in plan(cfg, out)}
    done: dict[str, Any] = {}
    with StageBoard(console) as board:
        with board.stage("prepare"):
            stages["prepare"].execute()
        done["content"] = carry_content(parent_dir, out)
        with board.stage("encode"):
            stages["encode"].execute()  # resumes after the carried vectors
        if cfg.clusters.source == CONTENT_SOURCE and has_clusters(parent_dir):

            def carry() -> None:
                meta = {"carried_from": str(parent_dir)}
                done["clusters"] = carry_clusters(parent_dir, out, meta)

            with board.stage("clusters"):  # the clusters stage, its work the carry
                dataclasses.replace(stages["clusters"], run=carry).execute()
    return done


def make_version(
    root: Path,
    logs: Path,
    items: Path | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    promote_passed: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Make, gate and (when it passes) promote the next version of the run `root`; returns
    its record (RUN/versions/<n>/version.json). The config is the run's (RUN/pipeline.yaml,
    or `config`) with `overrides`. Needs Ray up."""
    console = console or Console()
    root = root.resolve()
    started, made_at = time.perf_counter(), time.time()
    parent = serving_version(root)
    parent_dir = version_dir(root, parent)
    run_cfg = load_config(config or root / "pipeline.yaml", overrides or [])
    check_updatable(run_cfg, root)
    number = next_version(root)
    out = version_dir(root, number)
    out.mkdir(parents=True)
    base = ParquetSource(run_cfg.data.dataset.removeprefix(PARQUET)).roots[0]
    cfg = version_config(run_cfg, root, parent_dir, slice_folder(out, logs, items, base))
    save_config(cfg, out / "pipeline.yaml")
    console.print(f"version {number} of {root}, from version {parent}", soft_wrap=True)
    carried = _carried_stages(cfg, parent_dir, out, console)
    report = run_pipeline(cfg, out, console=console)
    trained = [model_name(variant_config(cfg, v)) for v in cfg.pipeline.variants]
    verdict = gate(out, trained, cfg.update)
    record = {
        "version": number,
        "made_at": made_at,
        "made_from": parent,
        "logs": str(logs.resolve()),
        "items": None if items is None else str(items.resolve()),
        **_contents(cfg, out, parent_dir, trained),
        "carried": carried,
        "gate": verdict,
        "evaluation": {
            name: {k: row[k] for k in SUMMARY_KEYS if k in row}
            for name, row in report.get("models", {}).items()
        },
        "seconds": {
            **{s.name: s.marked_seconds() for s in plan(cfg, out)},
            "total": round(time.perf_counter() - started, 1),
        },
        "promoted": False,
    }
    write_version(root, number, record)
    if verdict["passed"] and promote_passed:
        promote(root, number, "gate passed")
        record["promoted"] = True
    return record


def _contents(cfg: RunConfig, out: Path, parent_dir: Path, trained: list[str]) -> dict[str, Any]:
    """What a version holds and what it was trained from."""
    return {
        "dataset": cfg.data.dataset,
        "catalog": {"items": _catalog(out), "before": _catalog(parent_dir)},
        "trained_from": {m: str(parent_dir / "models" / m) for m in trained},
        "epochs": cfg.train.epochs,
        "lr": cfg.train.lr,
        "pairs_since": cfg.train.pairs_since,
        "reused": (
            {"ease_lambdas": list(cfg.peers.ease_lambdas), "ranking": cfg.eval.ranking}
            if cfg.update.reuse_choices
            else {}
        ),
    }


def _catalog(run_dir: Path) -> int:
    return pq.read_metadata(run_dir / "data" / "items.parquet").num_rows
