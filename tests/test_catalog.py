"""The served catalog: titles, topics, raw ids and the title search (mtmh/serving/catalog.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtmh.serving.catalog import ItemCatalog, UnknownRawIdError


def _write(run_dir: Path, table: pa.Table) -> Path:
    (run_dir / "data").mkdir(parents=True)
    pq.write_table(table, run_dir / "data" / "items.parquet")
    return run_dir


def test_titles_topics_and_search_order(tmp_path: Path) -> None:
    run = _write(
        tmp_path,
        pa.table(
            {
                "item_id": pa.array([2, 0, 1, 3], pa.int32()),  # stored out of order
                "raw_id": ["c", "a", "b", "d"],
                "text": ["Toy Soldiers\nbody", "Toy Story (1995)\nstarring x", None, "Heat"],
                "topic_l1": [["War"], ["Animation", "Comedy"], [], None],
                "interactions": pa.array([5, 452, 0, 9], pa.int64()),
            }
        ),
    )
    catalog = ItemCatalog.open(run)
    assert len(catalog) == 4 and catalog.raw_ids == ["a", "b", "c", "d"]
    a, b, c, d = catalog.describe([0, 1, 2, 3])
    assert (a.title, a.topics, a.interactions) == ("Toy Story (1995)", ["Animation", "Comedy"], 452)
    assert (b.title, b.topics) == ("b", [])  # no text: shown by its raw id
    assert (c.title, d.title, d.topics) == ("Toy Soldiers", "Heat", [])
    assert catalog.search("toy", limit=10) == [0, 2]  # most interacted first
    assert catalog.search("TOY", limit=1) == [0]
    assert catalog.search("c", limit=10) == [2]  # an exact raw id (no title has a "c")
    assert catalog.search("b", limit=10) == [1]  # raw id and title at once: listed once
    assert catalog.search("d", limit=10) == [3, 2]  # the exact raw id before "Toy Soldiers"
    assert catalog.search("  ", limit=10) == [] and catalog.search("zzz", limit=10) == []
    assert catalog.item_ids(["d", "a"]) == [3, 0]
    with pytest.raises(UnknownRawIdError, match="unknown raw_id 'x', 'y'"):
        catalog.item_ids(["a", "y", "x", "y"])


def test_a_catalog_with_ids_only_and_one_with_gaps(tmp_path: Path) -> None:
    bare = ItemCatalog.open(
        _write(
            tmp_path / "bare",
            pa.table(
                {
                    "item_id": pa.array([0, 1], pa.int32()),
                    "raw_id": pa.array([10, 11], pa.int64()),
                }
            ),
        )
    )
    assert [(i.raw_id, i.title, i.topics, i.interactions) for i in bare.describe([1])] == [
        ("11", "11", [], 0)
    ]
    assert bare.search("10", limit=5) == [0]
    gaps = _write(
        tmp_path / "gaps", pa.table({"item_id": pa.array([0, 2], pa.int32()), "raw_id": ["a", "b"]})
    )
    with pytest.raises(ValueError, match=r"item_id is not 0\.\.1"):
        ItemCatalog.open(gaps)
