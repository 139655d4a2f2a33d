"""The whole pipeline end to end on a tiny synthetic dataset in a local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from mtmh.config import load_config
from mtmh.eval.report import METRICS
from mtmh.index.artifact import IndexMismatchError, index_dir
from mtmh.pipeline import plan, run_pipeline
from mtmh.retrieval.heads import load_heads
from tests.tiny_data import TINY_SYNTHETIC

TINY = [
    *TINY_SYNTHETIC,
    "eval.fresh_snapshot_every=2",
    "pipeline.variants=[itemcf, mtmh]",
]


@pytest.mark.usefixtures("ray_local")
def test_pipeline_runs_every_stage_then_skips_them(tmp_path: Path) -> None:
    cfg = load_config(overrides=TINY)
    run = tmp_path / "run"
    report = run_pipeline(cfg, run, console=Console(quiet=True))

    assert report["dataset"] == "synthetic"
    # Models whose variant was not trained are left out; the rest carry every metric.
    assert set(report["models"]) == {
        "ItemKNN", "EASE", "ItemCF", "ContentEncoder", "MTMH-H1", "MTMH-H2", "MTMH"
    }  # fmt: skip
    # Both orders for every model; the headline rows are the order chosen on validation.
    chosen = report["ranking"]["chosen"]
    assert chosen in ("preranker", "ann") and set(report["ranking"]["validation"]) == {
        "preranker", "ann"
    }  # fmt: skip
    assert report["models_by_ranking"][chosen] == report["models"]
    for rows in report["models_by_ranking"].values():
        assert set(rows) == set(report["models"])
        assert all(m["unique_candidates"] > 0 for m in rows.values())
    # Early stopping kept a validated epoch of every trained model.
    assert set(report["validation_curves"]) == {"itemcf", "mtmh"}
    assert report["peers"]["ease"]["lambda"] in load_config().peers.ease_lambdas
    for metrics in report["models"].values():
        assert set(METRICS) <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in METRICS)
        assert metrics["recall@5"] <= metrics["recall@500"]
    assert [row["alpha"] for row in report["alpha_sweep"]] == [0, 30, 50, 70, 100]
    # The sweep is the same evaluation at other quotas: its alpha-50 row is MTMH's.
    row = next(r for r in report["alpha_sweep"] if r["alpha"] == 50)
    assert {k: row[k] for k in METRICS} == {k: report["models"]["MTMH"][k] for k in METRICS}
    assert set(report["ann_recall"]) >= {"mtmh/engagement", "mtmh/relevance", "content/content"}
    assert set(report["fresh_convergence"]) == {
        "MTMH (engagement head)", "MTMH (relevance head)", "ItemCF"
    }  # fmt: skip
    for curve in report["fresh_convergence"].values():
        assert curve["delta"][-1] == 0.0  # the last snapshot is the reference
    for name in ("report.json", "report.md", "recall_relevance.png", "alpha_curve.png",
                 "fresh_convergence.png", "validation_curves.png"):  # fmt: skip
        assert (run / name).stat().st_size > 0
    assert json.loads((run / "report.json").read_text())["models"] == report["models"]

    # Everything is current now; a changed eval knob redoes only the evaluation.
    assert all(stage.current() for stage in plan(cfg, run))
    changed = load_config(overrides=[*TINY, "eval.top_k=100"])
    stale = [s.name for s in plan(changed, run) if not s.current()]
    assert stale == ["evaluate"]
    # Resource knobs (CPUs, threads, reporting) never make an artifact stale.
    resized = load_config(overrides=[*TINY, "train.cpus_per_worker=1.0", "train.report_every=7"])
    assert all(stage.current() for stage in plan(resized, run))

    # An index is bound to its model version: another model's index under itemcf's name is
    # refused when the serving path loads it.
    meta = index_dir(run, "itemcf", "engagement") / "meta.json"
    record = json.loads(meta.read_text())
    record["model_version"] = report["model_versions"]["MTMH"]
    meta.write_text(json.dumps(record))
    with pytest.raises(IndexMismatchError, match="model_version"):
        load_heads(run, "itemcf", ("engagement",))
