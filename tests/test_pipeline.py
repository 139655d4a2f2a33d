"""The whole pipeline end to end on a tiny synthetic dataset in a local Ray."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from mtmh.config import load_config
from mtmh.eval.diversity_curve import report_settings
from mtmh.eval.report import METRICS
from mtmh.index.artifact import IndexMismatchError, index_dir
from mtmh.pipeline import plan, run_pipeline
from mtmh.retrieval.heads import load_heads
from tests.tiny_data import TINY_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_SYNTHETIC,
    "train.fresh_snapshot_every=2",
    "pipeline.variants=[itemcf, mtmh, dat]",
]


STAGE_LINES = ["prepare", "encode", "clusters", "train", "index", "preranker", "evaluate"]
# Stages that need no training, each with a line of its own when it ends beside the trainings.
BESIDE = ["peers", "index:content", "preranker:itemknn", "preranker:ease", "preranker:content"]


def _pipeline_job(run: Path) -> subprocess.CompletedProcess[str]:
    """`python ray_jobs/pipeline.py` as a user runs it, on the test session's Ray (as under
    `ray job submit`, the job joins the cluster named by RAY_ADDRESS)."""
    import ray

    sets = [a for o in TINY for a in ("--set", o)]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    job = [sys.executable, "ray_jobs/pipeline.py", "--out", str(run), *sets]
    return subprocess.run(job, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.usefixtures("ray_local")
def test_pipeline_runs_every_stage_then_skips_them(tmp_path: Path) -> None:
    cfg = load_config(overrides=TINY)
    run = tmp_path / "run"
    done = _pipeline_job(run)
    log = (run / "logs" / "pipeline.log").read_text()
    assert done.returncode == 0, (done.stderr, log[-3000:])
    # A quiet run: one line per stage, the paths it wrote, then the report table.
    lines = done.stdout.rstrip().splitlines()
    assert len(lines) <= 60 and done.stderr == "", done.stdout
    done_lines = [ln.split()[1] for ln in lines if ln.startswith("✓")]
    assert [name for name in done_lines if name not in BESIDE] == STAGE_LINES
    assert [name for name in done_lines if name in BESIDE] == BESIDE
    assert lines[-1].split()[0] == "MTMH" and "R@500" in done.stdout
    assert any(ln.startswith("wrote ") and "report.md" in ln for ln in lines)
    # The workers' output ("(RayTrainWorker pid=123) ...") went to the log file instead.
    assert re.search(r" pid=\d+\)", log) and not re.search(r" pid=\d+\)", done.stdout)

    # The peers, the content index and their prerankers run beside the trainings, from when
    # the trainings leave one of the session's two cores idle: once all but one have ended.
    def marker(folder: str) -> dict[str, float]:
        return json.loads((run / folder / "stage.json").read_text())

    ended = sorted(marker(f"models/{v}")["finished_at"] for v in ("itemcf", "mtmh", "dat"))
    peers = marker("peers")
    assert peers["finished_at"] - peers["seconds"] > ended[-2] - 0.1  # seconds: rounded
    for folder in ("indexes/content", "preranker/ease", "preranker/content"):
        assert marker(folder)["finished_at"] > peers["finished_at"]
    # They may go on beside the trained models' index and preranker stages; the evaluation,
    # the first stage to read them, starts after every one has ended.
    evaluated = marker("eval")
    beside_ended = max(marker(f)["finished_at"] for f in ("peers", "preranker/content"))
    assert evaluated["finished_at"] - evaluated["seconds"] > beside_ended - 0.1
    fitted = json.loads((run / "preranker" / "summary.json").read_text())["models"]
    assert set(fitted) == {"itemknn", "ease", "content", "itemcf", "mtmh", "dat"}
    report = json.loads((run / "report.json").read_text())

    assert report["dataset"] == "synthetic"
    # Models whose variant was not trained are left out; the rest carry every metric.
    assert set(report["models"]) == {
        "ItemKNN",
        "EASE",
        "ItemCF",
        "ContentEncoder",
        "MTMH-H1",
        "MTMH-H2",
        "MTMH",
        "DAT",
        "MTMH-H1 (DAT serving)",
        "MTMH (DAT serving)",
    }
    # Both orders for every model; the headline rows are the order chosen on validation.
    chosen = report["ranking"]["chosen"]
    assert chosen in ("preranker", "ann") and set(report["ranking"]["validation"]) == {
        "preranker",
        "ann",
    }
    assert report["models_by_ranking"][chosen] == report["models"]
    for rows in report["models_by_ranking"].values():
        assert set(rows) == set(report["models"])
        assert all(m["unique_candidates"] > 0 for m in rows.values())
    # Early stopping kept a validated epoch of every trained model.
    assert set(report["validation_curves"]) == {"itemcf", "mtmh", "dat"}
    assert (run / "models" / "dat" / "queries" / "engagement.npy").is_file()
    assert report["peers"]["ease"]["lambda"] in load_config().peers.ease_lambdas
    for metrics in report["models"].values():
        assert set(METRICS) <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in METRICS)
        assert metrics["recall@5"] <= metrics["recall@500"]
        # Diversity and fairness for every row, peers included.
        assert metrics["topics_l1"] >= 1 and 0 < metrics["coverage"] <= 1
        assert 0 <= metrics["exposure_gini"] < 1 and 0 <= metrics["tail_share"] <= 1
        assert -1 <= metrics["ils"] <= 1
        assert 1 <= metrics["clusters"] <= report["clusters"]["num_clusters"]
        # New items: measured for every row, peers included (their zeros are shown).
        assert 0 <= metrics["cold_share"] <= 1 and metrics["cold_users"] >= 0
    new = report["new_items"]
    assert 0 <= new["new"] < new["catalog"]
    assert "## New items (cold start)" in (run / "report.md").read_text()
    assert [row["alpha"] for row in report["alpha_sweep"]] == [0, 30, 50, 70, 100]
    # The sweep is the same evaluation at other quotas: its alpha-50 row is MTMH's.
    row = next(r for r in report["alpha_sweep"] if r["alpha"] == 50)
    assert {k: row[k] for k in METRICS} == {k: report["models"]["MTMH"][k] for k in METRICS}
    assert set(report["ann_recall"]) >= {
        "mtmh/engagement",
        "mtmh/relevance",
        "content/content",
        "dat/engagement",
    }
    assert set(report["fresh_convergence"]) == {
        "MTMH (engagement head)",
        "MTMH (relevance head)",
        "ItemCF",
    }
    for curve in report["fresh_convergence"].values():
        assert curve["delta"][-1] == 0.0  # the last snapshot is the reference
    for name in (
        "report.json",
        "report.md",
        "recall_relevance.png",
        "alpha_curve.png",
        "fresh_convergence.png",
        "validation_curves.png",
        "diversity_curve.png",
    ):
        assert (run / name).stat().st_size > 0
    assert "ItemKNN" in (run / "report.md").read_text()
    assert report["clusters"]["search"] == {"visit": 8, "strategy": "affinity", "temperature": 0.1}
    # The diversity-recall curve: MTMH-H1 searched globally and with every report setting.
    curve = report["diversity_curve"]
    settings = report_settings(report["clusters"]["num_clusters"])
    assert [(r["strategy"], r["visit"]) for r in curve["rows"]] == settings
    assert all("topics_l2" in r["metrics"]["ann"]["MTMH-H1"] for r in curve["rows"])
    assert "## Diversity against recall" in (run / "report.md").read_text()
    assert "its 8 nearest clusters, merged by affinity" in (run / "report.md").read_text()

    # Everything is current now: a second run redoes nothing and says so in one line.
    assert all(stage.current() for stage in plan(cfg, run))
    again = _pipeline_job(run)
    assert again.returncode == 0 and "✓" not in again.stdout
    assert (
        "current, skipped: prepare, encode, clusters, peers, index (4), preranker (6), "
        "train (3), evaluate" in again.stdout
    )
    assert run_pipeline(cfg, run, console=Console(quiet=True)) == report

    def stale(*overrides: str) -> list[str]:
        """The stages a pipeline with these overrides would redo on this run."""
        changed = load_config(overrides=[*TINY, *overrides])
        return [s.name for s in plan(changed, run) if not s.current()]

    # A changed eval knob redoes only the evaluation.
    assert stale("eval.top_k=100") == ["evaluate"]
    # Other clusters redo the clusters, dat (trained against them) and what measures with
    # them; another way of searching them redoes only the prerankers and the evaluation.
    assert stale("clusters.num_clusters=5") == [
        "clusters",
        "train:dat",
        "index:dat",
        "preranker:dat",
        "evaluate",
    ]
    assert stale("clusters.strategy=uniform") == ["preranker:dat", "evaluate"]
    # A retrained model is searched anew by its preranker, so that is refitted too; the
    # peers' and the content encoder's prerankers search what did not change.
    assert stale("train.lr=0.01") == [
        "train:itemcf",
        "train:mtmh",
        "train:dat",
        "index:itemcf",
        "index:mtmh",
        "index:dat",
        "preranker:itemcf",
        "preranker:mtmh",
        "preranker:dat",
        "evaluate",
    ]
    # Resource knobs (CPUs, threads, reporting) never make an artifact stale.
    assert stale("train.cpus_per_worker=1.0", "train.report_every=7") == []

    # An index is bound to its model version: another model's index under itemcf's name is
    # refused when the serving path loads it.
    meta = index_dir(run, "itemcf", "engagement") / "meta.json"
    record = json.loads(meta.read_text())
    record["model_version"] = report["model_versions"]["MTMH"]
    meta.write_text(json.dumps(record))
    with pytest.raises(IndexMismatchError, match="model_version"):
        load_heads(run, "itemcf", ("engagement",))

    # The clusters job, as a user runs it: a summary line, and a bad head is one clear error.
    job = [sys.executable, "ray_jobs/cluster_catalog.py", "--run", str(run)]
    sets = [a for o in TINY for a in ("--set", o)]
    done = subprocess.run(
        [*job, *sets, "--set", "clusters.num_clusters=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "4 clusters of content/content" in done.stdout
    bad = subprocess.run(
        [*job, *sets, "--set", "clusters.source=mtmh", "--set", "clusters.head=nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "clusters.head='nope'" in bad.stderr
