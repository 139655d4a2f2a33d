"""One variant's training job: `fit` plus what a person reads afterwards (loss curves and
summary.json). Shared by ray_jobs/train.py and the pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mtmh.config import RunConfig
from mtmh.errors import MtmhError
from mtmh.model.curves import plot_loss_curves, read_metrics
from mtmh.model.train_loop import START, fit, model_dir, model_name


class TrainingFailed(MtmhError, RuntimeError):
    """Ray Train gave up on the run (failures beyond train.max_failures)."""

    exit_code = 1  # the job ran and failed, as opposed to being given bad input


def train_variant(
    cfg: RunConfig, run_dir: Path, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train `cfg.model.variant` into RUN/models/<model.name or variant> with a TorchTrainer
    of its own; returns (and writes) its summary."""
    started = time.perf_counter()
    result = fit(cfg, run_dir, callbacks=callbacks)
    if result.error is not None:
        raise TrainingFailed(f"training {model_name(cfg)} failed: {result.error}")
    return write_summary(cfg, run_dir, result.metrics, time.perf_counter() - started)


def write_summary(
    cfg: RunConfig, run_dir: Path, final: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """summary.json and loss_curves.png of a finished training, from its metrics.jsonl and
    its `final` metrics row (Reporter.final); `seconds`: the training's wall time."""
    name = model_name(cfg)
    out = model_dir(run_dir, name)
    rows = read_metrics(out / "metrics.jsonl")
    plot_loss_curves(out / "metrics.jsonl", out / "loss_curves.png", name)
    val_rows = [r for r in rows if "val/score" in r]
    start = next((r[START + "score"] for r in rows if START + "score" in r), None)
    rows = [r for r in rows if r.get("epoch", 0) >= 0]  # the steps' rows, not a start row
    summary = {
        "variant": cfg.model.variant,
        "name": name,
        "steps": int(final["step"]),
        "epochs_run": len(val_rows) or None,
        "best_epoch": int(val_rows[-1]["val/best_epoch"]) if val_rows else None,
        "validation_score": [round(r["val/score"], 4) for r in val_rows],
        # a warm start's score before any step: the earlier model on this validation split
        "start_validation_score": None if start is None else round(start, 4),
        "seconds": round(seconds, 1),
        "first": _losses(rows[0]) if rows else {},
        "last": _losses(rows[-1]) if rows else {},
        # None when no step window was reported (a training shorter than train.report_every)
        "pairs_per_s_last": next(
            (round(r["pairs_per_s"], 1) for r in reversed(rows) if "pairs_per_s" in r), None
        ),
        # rank 0's seconds waiting for batches, in steps, validating and reporting; the
        # rest of "seconds" is start-up, reading the pairs and writing the outputs.
        "timings": {k: v for k, v in final.items() if k.startswith("time/")},
        "outputs": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _losses(row: dict[str, float]) -> dict[str, float]:
    """A metrics row's per-head losses ("<head>/<loss>"), without the validation keys."""
    return {k: round(v, 4) for k, v in row.items() if "/" in k and not k.startswith("val/")}
