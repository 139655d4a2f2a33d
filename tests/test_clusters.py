"""The catalog's clusters: k-means, the artifact, and where the pipeline builds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtmh.clusters.artifact import load_clusters, save_clusters
from mtmh.clusters.kmeans import spherical_kmeans
from mtmh.config import ConfigError, load_config
from mtmh.errors import ArtifactError
from mtmh.pipeline import plan


def _blobs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around k well-separated centres, and each vector's centre."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(16, k)))[0].T  # k orthonormal directions
    truth = rng.integers(0, k, n)
    x = centres[truth] + 0.05 * rng.normal(size=(n, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


def test_every_item_lands_in_exactly_one_non_empty_cluster() -> None:
    x, truth = _blobs(600, 6)
    c = spherical_kmeans(x, 6, seed=0, restarts=3)
    assert c.assignments.shape == (600,) and c.num_clusters == 6
    assert c.sizes().sum() == 600 and (c.sizes() > 0).all()
    assert sorted(np.concatenate([c.members(i) for i in range(6)]).tolist()) == list(range(600))
    np.testing.assert_allclose(np.linalg.norm(c.centroids, axis=1), 1.0, rtol=1e-5)
    # Well-separated blobs are recovered up to renaming: each cluster is one blob.
    for i in range(6):
        assert len(np.unique(truth[c.members(i)])) == 1
    again = spherical_kmeans(x, 6, seed=0, restarts=3)
    np.testing.assert_array_equal(again.assignments, c.assignments)  # seeded


def test_empty_clusters_are_dropped_and_ids_stay_contiguous() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)  # three distinct points only
    c = spherical_kmeans(x, 5, seed=0)
    assert c.num_clusters == 3 and (c.sizes() == 10).all()
    assert set(c.assignments.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match=r"2 <= k <= N"):
        spherical_kmeans(x, 31, seed=0)


def test_the_artifact_round_trips_and_refuses_another_catalog(tmp_path: Path) -> None:
    x, _ = _blobs(50, 3)
    c = spherical_kmeans(x, 3, seed=1)
    with pytest.raises(FileNotFoundError, match=r"cluster_catalog\.py"):
        load_clusters(tmp_path)
    save_clusters(tmp_path, c, {"source": "content", "head": "content"})
    got, meta = load_clusters(tmp_path, num_items=50)
    np.testing.assert_array_equal(got.assignments, c.assignments)
    np.testing.assert_array_equal(got.centroids, c.centroids)
    assert meta["num_clusters"] == 3 and sum(meta["sizes"]) == 50
    with pytest.raises(ArtifactError, match="cover 50 items, the catalog has 51"):
        load_clusters(tmp_path, num_items=51)


def test_the_pipeline_clusters_after_encode_or_after_the_trained_source(tmp_path: Path) -> None:
    names = [s.name for s in plan(load_config(), tmp_path)]
    assert names.index("clusters") == names.index("encode") + 1
    trained = load_config(
        overrides=[
            "clusters.source=mtmh",
            "clusters.head=relevance",
            "pipeline.variants=[mtmh, itemcf]",  # dat needs its clusters before it trains
        ]
    )
    names = [s.name for s in plan(trained, tmp_path)]
    assert names.index("clusters") > names.index("train:mtmh")
    assert names.index("clusters") < names.index("evaluate")
    with pytest.raises(ConfigError, match=r"clusters\.source='nope'"):
        plan(load_config(overrides=["clusters.source=nope"]), tmp_path)
