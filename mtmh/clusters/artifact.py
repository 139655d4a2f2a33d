"""The clusters of a run: RUN/clusters/, with the embedding version they came from.

    RUN/clusters/assignments.parquet  item_id (int32), cluster (int32): every item once
    RUN/clusters/centroids.npy        [K, D] float32, unit norm, in the source's space
    RUN/clusters/meta.json            source, head, model_version, sizes, settings

Whoever reads clusters built from a trained head can compare `model_version` with the
embeddings they serve (mtmh/embeddings.py), as the indexes do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtmh.clusters.kmeans import Clustering
from mtmh.errors import ArtifactError

ASSIGNMENTS_FILE, CENTROIDS_FILE, META_FILE = "assignments.parquet", "centroids.npy", "meta.json"


def clusters_dir(run_dir: Path) -> Path:
    return run_dir / "clusters"


def save_clusters(run_dir: Path, clustering: Clustering, meta: dict[str, Any]) -> None:
    folder = clusters_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(clustering.assignments)
    table = pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int32)),
            "cluster": pa.array(clustering.assignments.astype(np.int32)),
        }
    )
    pq.write_table(table, folder / ASSIGNMENTS_FILE)
    np.save(folder / CENTROIDS_FILE, clustering.centroids)
    record = {
        **meta,
        "num_clusters": clustering.num_clusters,
        "sizes": clustering.sizes().tolist(),
        "objective": clustering.objective,
    }
    (folder / META_FILE).write_text(json.dumps(record, indent=2) + "\n")


def has_clusters(run_dir: Path) -> bool:
    return (clusters_dir(run_dir) / META_FILE).is_file()


def load_clusters(run_dir: Path, num_items: int | None = None) -> tuple[Clustering, dict[str, Any]]:
    """The run's clusters and their meta; `num_items` checks they cover that catalog."""
    folder = clusters_dir(run_dir)
    if not has_clusters(run_dir):
        raise FileNotFoundError(
            f"{folder}: no clusters; run ray_jobs/cluster_catalog.py --run {run_dir}"
        )
    meta = json.loads((folder / META_FILE).read_text())
    table = pq.read_table(folder / ASSIGNMENTS_FILE).sort_by("item_id")
    ids = table["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ArtifactError(f"{folder / ASSIGNMENTS_FILE}: item ids are not 0..N-1 once each")
    if num_items is not None and len(ids) != num_items:
        raise ArtifactError(
            f"{folder}: clusters cover {len(ids)} items, the catalog has {num_items}; "
            "rebuild them with ray_jobs/cluster_catalog.py"
        )
    clustering = Clustering(
        table["cluster"].to_numpy().astype(np.int32),
        np.load(folder / CENTROIDS_FILE),
        float(meta.get("objective", float("nan"))),
    )
    return clustering, meta
