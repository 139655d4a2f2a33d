"""Warm start: a training that begins from an earlier run's model of the same name
(`train.init_from=EARLIER_RUN`), the update loop's retraining (issue 28), with the id table
grown to this run's catalog.

A base and the slices after it read as one dataset (`parquet:A+B`) keep every base item's
id, so the trained model's id rows are this run's first rows; the loader checks that the old
run's catalog is a prefix of this one's. The rows of the items that arrived since are copied
from their nearest trained item in the content encoder's space. bench/cold_rows.py measured
the choices on trained models: a zero or averaged row makes new items hubs (13% to 43% of all
served slots against about 1% of the engagement), a copied row keeps a trained row's scale.

Example:
    task = build_task(cfg, run_dir)
    grown = warm_start_from(task.tower, Path("runs/base/models/mtmh"), run_dir)  # new rows
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from mtmh.embeddings import EmbeddingSource
from mtmh.errors import ArtifactError
from mtmh.index.faiss_index import build_exact, search
from mtmh.model.tower import ItemTower

ID_ROWS = "sparse.id_table.weight"


def content_nearest(content: np.ndarray, num_old: int) -> np.ndarray:
    """For items num_old..N-1: the nearest of items 0..num_old-1 by inner product."""
    old = np.arange(num_old)
    _, nearest = search(build_exact(content[:num_old], old), content[num_old:], 1)
    return nearest[:, 0]


def grow_id_rows(rows: torch.Tensor, nearest: np.ndarray) -> torch.Tensor:
    """[old N, D] trained rows -> [old N + len(nearest), D]: row old N + i is a copy of row
    nearest[i]."""
    return torch.cat([rows, rows[torch.as_tensor(nearest, dtype=torch.long)]])


def check_catalog_prefix(old_raw_ids: list[str], raw_ids: list[str]) -> None:
    """An earlier run's items must be this run's first items, under the same ids."""
    if raw_ids[: len(old_raw_ids)] != old_raw_ids:
        raise ArtifactError(
            "the earlier run's catalog is not a prefix of this run's: read the base first "
            "(parquet:BASE+SLICE) so that every item keeps its id"
        )


def warm_start(
    tower: ItemTower,
    state: dict[str, torch.Tensor],
    old_raw_ids: list[str],
    raw_ids: list[str],
    content: np.ndarray | None,
) -> int:
    """Load a trained `state` into `tower`, growing its id rows to the catalog `raw_ids`
    (item id order) from the trained one's `old_raw_ids`; returns how many rows were added."""
    check_catalog_prefix(old_raw_ids, raw_ids)
    added = len(raw_ids) - len(old_raw_ids)
    if added and tower.sparse.hash_buckets is None:
        if content is None:
            raise ArtifactError("new items' id rows are copied by content: run encode first")
        state = dict(state)
        state[ID_ROWS] = grow_id_rows(state[ID_ROWS], content_nearest(content, len(old_raw_ids)))
    try:
        tower.load_state_dict(state)
    except RuntimeError as err:  # another variant, or other model sizes
        raise ArtifactError(
            f"the trained weights do not fit this {tower.variant.name} tower: {err}"
        ) from err
    return added


def warm_start_source(init_from: str | Path, name: str) -> Path:
    """The trained model's folder `train.init_from` names: a model folder itself (it holds
    model.pt), or an earlier run, whose model of the same `name` it means."""
    given = Path(init_from)
    folder = given if (given / "model.pt").is_file() else given / "models" / name
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(
            f"train.init_from={init_from}: neither a trained model's folder nor a run with a "
            f"model {name!r} ({folder / 'model.pt'} not found)"
        )
    return folder


def warm_start_from(tower: ItemTower, source: Path, run_dir: Path) -> int:
    """`warm_start` from a trained model's folder (RUN/models/<name>) of an earlier run."""
    path = source / "model.pt"
    old_run = source.parent.parent
    content = None
    if (run_dir / "content").is_dir():
        _, content = EmbeddingSource.content(run_dir).load("content")
    return warm_start(
        tower,
        torch.load(path, map_location="cpu"),
        catalog_raw_ids(old_run),
        catalog_raw_ids(run_dir),
        content,
    )


def catalog_raw_ids(run_dir: Path) -> list[str]:
    """A prepared run's raw item ids in item id order."""
    items = pq.read_table(run_dir / "data" / "items.parquet", columns=["item_id", "raw_id"])
    return [str(r) for r in items.sort_by("item_id")["raw_id"].to_pylist()]
