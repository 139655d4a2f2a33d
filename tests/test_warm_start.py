"""Warm start (train.init_from): a trained tower's weights, its id table grown to a catalog
that gained items; the new rows copy their content-nearest trained item's row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtmh.config import ModelConfig
from mtmh.errors import ArtifactError
from mtmh.model.tower import ItemFeatureTables, ItemTower
from mtmh.model.train_loop import embed_all
from mtmh.model.variants import get_variant
from mtmh.model.warm_start import (
    ID_ROWS,
    content_nearest,
    grow_id_rows,
    warm_start,
    warm_start_source,
)

CFG = ModelConfig(dim=8, id_dim=8, cat_dim=4, dense_dim=4, hidden_dim=16)


def _tables(n: int, content: np.ndarray) -> ItemFeatureTables:
    """The first n items of one catalog (its side features drawn once for all of it)."""
    rng = np.random.default_rng(1)
    dense = rng.random((len(content), 2)).astype(np.float32)
    categorical = rng.integers(0, 3, size=(len(content), 1))
    return ItemFeatureTables(
        dense=dense[:n],
        categorical=categorical[:n],
        cardinalities=[3],
        content_features=content[:n].copy(),
        teacher=content[:n].copy(),
    )


def _content(n: int) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_new_rows_copy_the_content_nearest_old_row() -> None:
    content = _content(6)
    content[4] = content[1]  # item 4 has item 1's content exactly
    nearest = content_nearest(content, 4)
    assert nearest[0] == 1 and 0 <= nearest[1] < 4
    rows = torch.arange(8.0).reshape(4, 2)
    grown = grow_id_rows(rows, nearest)
    assert grown.shape == (6, 2) and torch.equal(grown[:4], rows)
    assert torch.equal(grown[4], rows[1])


def test_a_warm_started_tower_keeps_every_old_item_and_places_the_new_ones() -> None:
    content = _content(14)
    variant = get_variant("mtmh")
    torch.manual_seed(0)
    old = ItemTower(variant, _tables(10, content), CFG)
    with torch.no_grad():  # "trained": rows unlike a fresh initialisation
        old.sparse.id_table.weight.mul_(20.0)
    old_ids = [f"i{k}" for k in range(10)]
    new_ids = [*old_ids, "n0", "n1", "n2", "n3"]
    torch.manual_seed(1)
    tower = ItemTower(variant, _tables(14, content), CFG)
    added = warm_start(tower, old.state_dict(), old_ids, new_ids, content)
    assert added == 4
    before, after = embed_all(old), embed_all(tower)
    for head in before:  # the same weights: every old item's embedding is unchanged
        np.testing.assert_allclose(after[head][:10], before[head], rtol=1e-5, atol=1e-6)
    rows = tower.state_dict()[ID_ROWS]
    for i, j in enumerate(content_nearest(content, 10)):
        assert torch.equal(rows[10 + i], old.state_dict()[ID_ROWS][j])


def test_a_catalog_that_renumbers_old_items_or_another_variant_is_refused() -> None:
    content = _content(12)
    old = ItemTower(get_variant("mtmh"), _tables(10, content), CFG)
    ids = [f"i{k}" for k in range(10)]
    tower = ItemTower(get_variant("mtmh"), _tables(12, content), CFG)
    with pytest.raises(ArtifactError, match="not a prefix"):
        warm_start(tower, old.state_dict(), ids, ["i1", "i0", *ids[2:], "n0", "n1"], content)
    with pytest.raises(ArtifactError, match="copied by content"):
        warm_start(tower, old.state_dict(), ids, [*ids, "n0", "n1"], None)
    other = ItemTower(get_variant("itemcf"), _tables(12, content), CFG)
    with pytest.raises(ArtifactError, match="do not fit this itemcf tower"):
        warm_start(other, old.state_dict(), ids, [*ids, "n0", "n1"], content)


def test_init_from_names_a_model_folder_or_a_run_with_a_model_of_the_same_name(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "base" / "models" / "mtmh"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"")
    assert warm_start_source(tmp_path / "base", "mtmh") == folder
    assert warm_start_source(folder, "mtmh-warm") == folder  # the folder itself, any name
    with pytest.raises(FileNotFoundError, match="a run with a model 'dat'"):
        warm_start_source(tmp_path / "base", "dat")
