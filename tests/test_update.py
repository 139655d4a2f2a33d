"""The update loop on a tiny sliced dataset in a local Ray: a base run, an update that adds a
day's logs and items, a version the gate rejects, and a rollback (mtmh/update/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from rich.console import Console

from mtmh.clusters.artifact import load_clusters
from mtmh.config import load_config
from mtmh.data.slices import slice_dataset
from mtmh.data.sources import get_source
from mtmh.embeddings import EmbeddingSource
from mtmh.index.artifact import index_dir, read_meta
from mtmh.pipeline import run_pipeline
from mtmh.serving.inprocess import InProcessRetrieval
from mtmh.serving.plan import plan_i2i
from mtmh.serving.run import ServingRun
from mtmh.update.make_version import make_version
from mtmh.versions import read_version, rollback, serving_dir, serving_version, version_dir
from tests.tiny_data import TINY_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TINY_SYNTHETIC, "pipeline.variants=[mtmh, dat]", "train.fresh_snapshot_every=null"]
DAY = 86_400


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic log cut into a base and two 5-day slices (the first brings items)."""
    out = tmp_path_factory.mktemp("days")
    cfg = load_config(overrides=TINY)
    source = get_source(cfg.data).load(tmp_path_factory.mktemp("cache"))
    slice_dataset(source, out, 2, 5 * DAY)
    return out


@pytest.fixture(scope="module")
def base(ray_local: None, days: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    cfg = load_config(overrides=[*TINY, f"data.dataset=parquet:{days / 'base'}"])
    run_pipeline(cfg, run, console=Console(quiet=True))
    return run


def _answers(run_dir: Path) -> list[list[tuple[int, str]]]:
    ref = InProcessRetrieval(ServingRun.open(run_dir))
    return [[(c.item_id, c.head) for c in ref.answer(plan_i2i(ref.run, i))] for i in (3, 77, 150)]


def _update_job(run: Path, logs: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    """`python ray_jobs/update.py` as a user runs it, on the test session's Ray."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    job = [sys.executable, "ray_jobs/update.py", str(run), "--logs", str(logs)]
    job += [a for s in sets for a in ("--set", s)]
    return subprocess.run(job, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows


def test_an_update_adds_exactly_the_new_items_to_every_artifact_and_is_served(
    base: Path, days: Path
) -> None:
    before = _answers(base)
    new_items = _rows(days / "slice-01" / "items.parquet")
    assert new_items > 0, "the first slice should bring items"
    done = _update_job(base, days / "slice-01", "update.variants=[mtmh, dat]")
    assert done.returncode == 0, (done.stderr, (base / "logs" / "update.log").read_text()[-3000:])
    assert "version 1: promoted" in done.stdout

    v1, n_old = version_dir(base, 1), _rows(base / "data" / "items.parquet")
    n = n_old + new_items
    assert _rows(v1 / "data" / "items.parquet") == n
    old_raw = pq.read_table(base / "data" / "items.parquet").sort_by("item_id")["raw_id"]
    new_raw = pq.read_table(v1 / "data" / "items.parquet").sort_by("item_id")["raw_id"]
    assert new_raw.slice(0, n_old).equals(old_raw)  # every earlier item kept its id
    # Content: the earlier vectors carried bit for bit, only the new items embedded.
    _, old_vectors = EmbeddingSource.content(base).load("content")
    ids, vectors = EmbeddingSource.content(v1).load("content")
    assert np.array_equal(ids, np.arange(n)) and np.array_equal(vectors[:n_old], old_vectors)
    record = read_version(base, 1)
    assert record["carried"]["content"] == {"carried": n_old, "to_embed": new_items}
    # Clusters: the same centroids, the earlier items where they were.
    (old_c, _), (new_c, _) = load_clusters(base), load_clusters(v1, n)
    assert np.array_equal(new_c.assignments[:n_old], old_c.assignments)
    assert np.array_equal(new_c.centroids, old_c.centroids)
    for model in ("mtmh", "dat"):
        state = torch.load(v1 / "models" / model / "model.pt", map_location="cpu")
        assert state["sparse.id_table.weight"].shape[0] == n
        for head, path in EmbeddingSource.trained(v1, model).heads.items():
            assert _rows(path) == n
            assert read_meta(index_dir(v1, model, head)).num_items == n
    assert np.load(v1 / "models" / "dat" / "queries" / "engagement.npy").shape[0] == n
    report = json.loads((v1 / "report.json").read_text())
    assert report["new_items"]["catalog"] == n
    assert report["new_items"]["from"] == n_old  # the items since version 0 count as new
    assert report["new_items"]["new"] >= new_items
    # The window: trained only on pairs after version 0's T1 cut.
    cut = json.loads((base / "data" / "stats.json").read_text())["cut_timestamp"]
    assert record["pairs_since"] == cut
    (manifest,) = [json.loads(p.read_text()) for p in v1.glob("training_pairs/*/manifest.json")]
    assert manifest["pairs_since"] == cut and 0 < manifest["before_window"] < manifest["pairs_read"]
    # The served report: no "(DAT serving)" rows or diversity curve, version 0's choices kept.
    base_report = json.loads((base / "report.json").read_text())
    assert any(s.endswith("(DAT serving)") for s in base_report["models"])
    assert not any(s.endswith("(DAT serving)") for s in report["models"])
    assert "diversity_curve" in base_report and "diversity_curve" not in report
    lam = json.loads((base / "peers" / "ease" / "meta.json").read_text())["lambda"]
    base_order = json.loads((base / "eval" / "ranking.json").read_text())["chosen"]
    assert record["reused"] == {"ease_lambdas": [lam], "ranking": base_order}
    assert json.loads((v1 / "peers" / "ease" / "meta.json").read_text())["lambda"] == lam
    # The gate: each model before and after the update, on the same validation split.
    gate = record["gate"]
    assert gate["passed"] and gate["models"]["mtmh"]["gated"]
    assert not gate["models"]["dat"]["gated"]
    assert all(0 < m["serving"] <= 1 and 0 < m["new"] <= 1 for m in gate["models"].values())
    assert record["promoted"] and serving_version(base) == 1
    assert ServingRun.open(base).run_dir == v1
    assert _answers(base) != before or _answers(v1) == _answers(base)

    # A version the gate rejects is written and never served.
    rejected = _update_job(base, days / "slice-02", "update.tolerance=-1.0")  # mtmh only
    assert rejected.returncode == 0, rejected.stderr
    assert "version 2: not promoted" in rejected.stdout
    record2 = read_version(base, 2)
    assert record2["made_from"] == 1 and not record2["gate"]["passed"]
    assert not record2["promoted"] and serving_dir(base) == v1
    assert ServingRun.open(base).run_dir == v1

    # Rollback: version 0 serves again, with its own answers.
    assert rollback(base)["version"] == 0
    assert ServingRun.open(base).run_dir == base
    assert _answers(base) == before


def test_an_update_refuses_a_run_that_is_not_a_parquet_dataset(
    ray_local: None, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.yaml").write_text("data:\n  dataset: synthetic\n")
    with pytest.raises(Exception, match="parquet: dataset") as err:
        make_version(run, tmp_path)
    assert type(err.value).__name__ == "ConfigError"
    assert not (run / "serving.json").exists()


def test_a_slice_can_be_a_log_file_with_or_without_new_catalog_rows(tmp_path: Path) -> None:
    from mtmh.data.sources.parquet import ParquetSource
    from mtmh.update.make_version import slice_folder
    from tests.tiny_data import write_tiny_dataset

    base = write_tiny_dataset(tmp_path / "base", with_bad_rows=False)
    logs = tmp_path / "new" / "interactions.csv"
    logs.parent.mkdir()
    logs.write_text("user_id,item_id,timestamp,weight\nu1,m9,1700000000,1.0\n")
    items = tmp_path / "new" / "catalog.parquet"
    new_items = pq.read_table(base / "items.parquet").slice(0, 1)
    pq.write_table(new_items.set_column(0, "item_id", pa.array(["m9"])), items)

    with_items = slice_folder(tmp_path / "v1", logs, items, base)
    data = ParquetSource(f"{base}+{with_items}").load(tmp_path / "cache")
    assert data.items["raw_id"].to_pylist()[-1] == "m9" and len(data.logs.paths) == 2

    only_logs = slice_folder(tmp_path / "v2", logs.parent, None, base)  # a folder of logs
    assert _rows(only_logs / "items.parquet") == 0  # no new items: an empty catalog
    data = ParquetSource(f"{base}+{only_logs}").load(tmp_path / "cache")
    assert data.items.num_rows == _rows(base / "items.parquet")
    with pytest.raises(FileNotFoundError, match="not found"):
        slice_folder(tmp_path / "v3", tmp_path / "missing", None, base)


def test_each_version_takes_its_settings_from_the_run_not_from_the_version_before(
    tmp_path: Path,
) -> None:
    """An update narrows its own evaluation, keeps one EASE lambda and fixes the served order;
    the next update starts from the run's config again (a full report, a lambda search when
    asked for one), while its data and warm start follow the serving version."""
    import dataclasses

    from mtmh.config import save_config
    from mtmh.update.make_version import version_config

    def folder(path: Path, cfg: object, catalog: int, cut: int) -> Path:
        (path / "data").mkdir(parents=True)
        (path / "peers" / "ease").mkdir(parents=True)
        (path / "eval").mkdir()
        save_config(cfg, path / "pipeline.yaml")
        items = pa.table({"item_id": pa.array(range(catalog), pa.int32())})
        pq.write_table(items, path / "data" / "items.parquet")
        (path / "data" / "stats.json").write_text(json.dumps({"cut_timestamp": cut}))
        (path / "peers" / "ease" / "meta.json").write_text(json.dumps({"lambda": 250.0}))
        (path / "eval" / "ranking.json").write_text(json.dumps({"chosen": "ann"}))
        return path

    run_cfg = load_config(overrides=["data.dataset=parquet:/d/base", "pipeline.variants=[mtmh]"])
    root = folder(tmp_path / "run", run_cfg, 100, 1_000)
    v1 = version_config(run_cfg, root, root, Path("/d/s1"))
    assert v1.data.dataset == "parquet:/d/base+/d/s1" and v1.train.pairs_since == 1_000
    assert not v1.eval.partitioned_rows and v1.eval.diversity_curve_users == 0
    assert v1.peers.ease_lambdas == (250.0,) and v1.eval.ranking == "ann"
    assert v1.eval.new_items_from == 100 and v1.train.lr == run_cfg.update.lr
    parent = folder(root / "versions" / "1", v1, 110, 2_000)

    full = dataclasses.replace(
        run_cfg, update=dataclasses.replace(run_cfg.update, report="full", reuse_choices=False)
    )
    v2 = version_config(full, root, parent, Path("/d/s2"))
    assert v2.data.dataset == "parquet:/d/base+/d/s1+/d/s2"
    assert v2.train.init_from == str(parent) and v2.train.pairs_since == 2_000
    assert v2.eval.partitioned_rows == run_cfg.eval.partitioned_rows
    assert v2.eval.diversity_curve_users == run_cfg.eval.diversity_curve_users
    assert v2.peers.ease_lambdas == run_cfg.peers.ease_lambdas
    assert v2.eval.ranking == run_cfg.eval.ranking
    assert v2.eval.new_items_from == 100  # still the last full training's catalog
