"""What an update takes over from the version it starts from instead of redoing it.

- **Content embeddings.** The content encoder is frozen between full runs (it is the teacher
  every model distils from), so an item whose text and image are unchanged keeps its vector.
  The earlier encoder is copied and those vectors are written as the first part file of the
  new version's embedding (mtmh/content/parts.py); the encode stage then resumes, embedding
  only the items that arrived or changed.
- **Clusters** built from the content embeddings keep their centroids and assignments (a
  prompted model's prompts are per cluster, so renumbering them would scramble its warm
  start); each new item joins its nearest centroid.

Both need the version's items.parquet (prepare first). Clusters built from a trained head
move with the model and are rebuilt by the pipeline instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtmh.clusters.artifact import has_clusters, load_clusters, save_clusters
from mtmh.clusters.kmeans import Clustering
from mtmh.content.encode import EMBEDDINGS_FILE, embeddings_schema
from mtmh.content.parts import EmbeddingParts, folder_digest
from mtmh.embeddings import CONTENT_SOURCE, EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.model.warm_start import catalog_raw_ids, check_catalog_prefix

CONTENT_COLUMNS = ["text", "image_uri"]  # what the content encoder's vector depends on


def items_table(run_dir: Path) -> pa.Table:
    return pq.read_table(run_dir / "data" / "items.parquet", columns=["item_id", *CONTENT_COLUMNS])


def unchanged_items(earlier: Path, run_dir: Path) -> np.ndarray:
    """Item ids of `run_dir` whose text and image are what they were in `earlier` under the
    same id. The earlier catalog must be a prefix of this one (`parquet:A+B`)."""
    check_catalog_prefix(catalog_raw_ids(earlier), catalog_raw_ids(run_dir))
    old, new = items_table(earlier), items_table(run_dir)
    new = new.filter(pc.less(new["item_id"], old.num_rows)).sort_by("item_id")
    old = old.sort_by("item_id")
    same = np.ones(old.num_rows, dtype=bool)
    for column in CONTENT_COLUMNS:  # a missing text or image equals a missing one
        a, b = (pc.fill_null(t[column], "") for t in (new, old))
        same &= pc.equal(a, b).to_numpy(zero_copy_only=False)
    return np.flatnonzero(same).astype(np.int32)


def carry_content(earlier: Path, run_dir: Path) -> dict[str, int]:
    """Copy `earlier`'s encoder into `run_dir`, and its vectors of the unchanged items as the
    first part of `run_dir`'s embedding; returns how many were carried and how many are left
    to embed."""
    src, dst = earlier / "content", run_dir / "content"
    if (dst / "encoder").exists():
        shutil.rmtree(dst / "encoder")
    shutil.copytree(src / "encoder", dst / "encoder")
    keep = unchanged_items(earlier, run_dir)
    table = pq.read_table(src / EMBEDDINGS_FILE)
    table = table.filter(pa.array(np.isin(table["item_id"].to_numpy(), keep)))
    dim = table.schema.field("embedding").type.list_size
    parts = EmbeddingParts.open(
        dst / EMBEDDINGS_FILE, embeddings_schema(dim), folder_digest(dst / "encoder")
    )
    if not parts.done_ids().size:  # else a stopped update resumes: the part is written
        with parts.appending() as append:
            append(table.cast(embeddings_schema(dim)))
    total = pq.read_metadata(run_dir / "data" / "items.parquet").num_rows
    return {"carried": int(table.num_rows), "to_embed": total - int(table.num_rows)}


def carry_clusters(earlier: Path, run_dir: Path, meta: dict[str, Any]) -> dict[str, int]:
    """`earlier`'s content clusters, each of `run_dir`'s new items joining its nearest
    centroid (inner product of unit vectors); needs `run_dir`'s content embeddings."""
    if not has_clusters(earlier):
        raise ArtifactError(f"{earlier}: no clusters to carry over")
    old, old_meta = load_clusters(earlier)
    source = EmbeddingSource.content(run_dir)
    ids, vectors = source.load(CONTENT_SOURCE)
    num_old = len(old.assignments)
    new_vectors = vectors[ids >= num_old]
    joined = (new_vectors @ old.centroids.T).argmax(axis=1).astype(np.int32)
    clustering = Clustering(np.concatenate([old.assignments, joined]), old.centroids, old.objective)
    save_clusters(
        run_dir,
        clustering,
        {**old_meta, **meta, "model_version": source.version, "added_items": len(joined)},
    )
    return {"added": len(joined), "num_clusters": clustering.num_clusters}
