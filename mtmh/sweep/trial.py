"""One trial of the w_r sweep: train MTMH with the trial's w_r and seed through the same code
as ray_jobs/train.py, build its indexes, and evaluate it with the pipeline's protocol at every
alpha of `eval.alphas` (no retraining per alpha).

During training, Ray Train's reports reach Tune through `TuneReportCallback`, so a scheduler
such as ASHA sees the losses step by step. The final report carries the metrics at the serving
alpha and, flattened as `a<alpha>/<metric>`, the whole alpha sweep.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mtmh.config import RunConfig, build_config

FINAL_FLAG = "evaluated"  # present (1.0) in the trial's last report only


def trial_model_name(w_r: float, seed: int) -> str:
    return f"mtmh-wr{w_r:g}-seed{seed}"


def trial_config(base: RunConfig, w_r: float, seed: int) -> RunConfig:
    model = dataclasses.replace(
        base.model, variant="mtmh", w_r=float(w_r), name=trial_model_name(w_r, seed)
    )
    train = dataclasses.replace(base.train, fresh_snapshot_every=None)  # no fresh analysis here
    return dataclasses.replace(base, model=model, train=train, seed=int(seed))


def alpha_key(alpha: float, metric: str) -> str:
    return f"a{alpha:g}/{metric}"


def wr_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable (it drives a TorchTrainer; its workers do the work)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from mtmh.eval.protocol import ModelSpec, evaluate_model, sample_users
    from mtmh.index.build import build_indexes
    from mtmh.model.training import train_variant
    from mtmh.preranker.train import fit_preranker
    from mtmh.retrieval.ranking import resolved_ranking

    base = build_config(config["run_config"])
    cfg = trial_config(base, config["w_r"], config["seed"])
    run_dir = Path(config["run_dir"])
    name = cfg.model.name
    assert name is not None
    summary = train_variant(cfg, run_dir, callbacks=[TuneReportCallback()])
    build_indexes(run_dir, name, cfg, in_process=True)
    fit_preranker(cfg, run_dir, name)  # the trial's model gets its own, as every model does
    alphas = sorted({*cfg.eval.alphas, cfg.eval.alpha})
    users = sample_users(run_dir, cfg.eval)  # the eval seed, not the trial's: same users
    result = evaluate_model(
        run_dir,
        ModelSpec("MTMH", name, ("engagement", "relevance")),
        cfg,
        users,
        alphas,
        resolved_ranking(cfg, run_dir),  # the order the run's evaluation chose
    )
    # The last training losses ride along: a scheduler's metric must be in every report.
    final: dict[str, Any] = {
        **summary["last"],
        FINAL_FLAG: 1.0,
        "w_r": cfg.model.w_r,
        "seed": cfg.seed,
        "steps": summary["steps"],
    }
    final.update(result["by_alpha"][cfg.eval.alpha])
    for alpha, metrics in result["by_alpha"].items():
        for metric, value in metrics.items():
            final[alpha_key(alpha, metric)] = value
    ray.tune.report(final)
