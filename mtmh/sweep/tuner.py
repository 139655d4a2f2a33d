"""Building, running and restoring the w_r sweep as a Ray Tune experiment.

The experiment lives in RUN/tune/wr_sweep/ (Tune's own storage: per-trial result.json,
progress.csv and TensorBoard event files). `run_sweep(..., resume=True)` continues an
interrupted sweep with `Tuner.restore` (finished trials are kept, unfinished and errored ones
rerun); Tune retries a failed trial up to `sweep.max_failures` times.

Resources: a trial is only the driver of its TorchTrainer (`sweep.trial_cpus`, default 0);
its workers take `train.cpus_per_worker` each (and a GPU each with `train.use_gpu`), so
`sweep.max_concurrent_trials` trials fit side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mtmh.config import RunConfig, config_to_dict
from mtmh.sweep.trial import FINAL_FLAG, wr_trial

log = logging.getLogger(__name__)
EXPERIMENT = "wr_sweep"


def sweep_dir(run_dir: Path) -> Path:
    return run_dir / "tune"


def _param_space(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    from ray import tune

    sc = cfg.sweep
    pick = tune.grid_search if sc.search == "grid" else tune.choice
    return {
        "run_config": config_to_dict(cfg),
        "run_dir": str(run_dir.resolve()),
        "w_r": pick(list(sc.w_r_values)),
        "seed": pick(list(sc.seeds)),
    }


def build_tuner(cfg: RunConfig, run_dir: Path, resume: bool = False) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    sc = cfg.sweep
    storage = sweep_dir(run_dir).resolve()
    # Tune refuses an empty request, so a CPU-less trial asks for memory instead: a fraction of
    # a CPU would leave less than the one whole CPU a Ray Data ListFiles task needs.
    trainable = tune.with_resources(
        wr_trial, {"cpu": sc.trial_cpus, "memory": sc.trial_memory_mb * 1024**2}
    )
    path = storage / EXPERIMENT
    if resume and tune.Tuner.can_restore(str(path)):
        log.info("resuming the sweep at %s", path)
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    scheduler = (
        ASHAScheduler(metric=sc.asha_metric, mode="min", grace_period=sc.asha_grace_period)
        if sc.scheduler == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        trainable,
        param_space=_param_space(cfg, run_dir),
        tune_config=tune.TuneConfig(
            num_samples=sc.num_samples,
            max_concurrent_trials=sc.max_concurrent_trials,
            scheduler=scheduler,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=sc.max_failures),
        ),
    )


def collect(results: Any) -> list[dict[str, Any]]:
    """One record per trial from Tune's ResultGrid: its config, status and last metrics."""
    records = []
    for result in results:
        metrics = dict(result.metrics or {})
        config = result.config or {}
        if result.error is not None:
            status = "error"
        elif metrics.get(FINAL_FLAG):
            status = "evaluated"
        else:
            status = "stopped"  # a scheduler ended it during training
        records.append(
            {
                "w_r": float(config.get("w_r") or metrics.get("w_r") or 0.0),
                "seed": int(config.get("seed") or metrics.get("seed") or 0),
                "status": status,
                "error": str(result.error) if result.error is not None else None,
                "metrics": metrics,
                "path": str(result.path),
            }
        )
    return sorted(records, key=lambda r: (r["w_r"], r["seed"]))


def run_sweep(cfg: RunConfig, run_dir: Path, resume: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) the sweep; each trial fits its own model's preranker."""
    return collect(build_tuner(cfg, run_dir, resume).fit())
