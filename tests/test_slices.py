"""A dataset cut by time into a base and slices (mtmh/data/slices.py), on the tiny dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtmh.config import build_config
from mtmh.data.prepare import prepare
from mtmh.data.slices import period_of, slice_dataset
from mtmh.data.sources import SchemaError, get_source
from mtmh.data.sources.parquet import ParquetSource
from tests.tiny_data import BAD_ROWS, GOOD_ROWS, MALFORMED_LINES, T0, write_tiny_dataset

DAY = 86_400
BOUNDS = (0, T0 + 30 * DAY)  # "-5" and "99999999999" are impossible, as prepare says


def _cut(tmp_path: Path, end_fraction: float = 1.0, end: int | None = None) -> tuple[Path, dict]:
    root = write_tiny_dataset(tmp_path / "src")
    cfg = build_config(overrides=[f"data.dataset=parquet:{root}"])
    source = get_source(cfg.data).load(tmp_path / "cache")
    out = tmp_path / "days"
    return out, slice_dataset(source, out, 2, 3 * DAY, BOUNDS, end_fraction, end)


def _rows(folder: Path) -> list[tuple[str, str]]:
    table = pq.read_table(folder / "interactions")
    return sorted(zip(table["user_id"].to_pylist(), table["item_id"].to_pylist(), strict=True))


def test_periods_end_at_the_newest_timestamp_and_include_their_end() -> None:
    end = 100
    got = period_of(np.array([0, 70, 71, 85, 86, 100]), end, 2, 15)
    assert got.tolist() == [0, 0, 1, 1, 2, 2]  # base <= 70 < slice 1 <= 85 < slice 2 <= 100
    assert period_of(np.array([101]), end, 2, 15).tolist() == [3]  # after the slices


def test_every_row_lands_in_one_folder_by_time_and_nothing_is_lost(tmp_path: Path) -> None:
    out, meta = _cut(tmp_path)
    # The newest plausible row is T0 + 9 days; the impossible timestamp does not move it.
    assert meta["end"] == T0 + 9 * DAY
    assert meta["bounds"] == [T0 + 3 * DAY, T0 + 6 * DAY, T0 + 9 * DAY]
    assert _rows(out / "slice-01") == [("u3", "a")]  # T0 + 4 days
    assert _rows(out / "slice-02") == [("u1", "d"), ("u2", "e")]  # T0 + 9 and + 8 days
    # Every other good row and every bad one (kept for prepare to quarantine) is the base's.
    assert sum(meta["rows"].values()) == len(GOOD_ROWS) + len(BAD_ROWS)
    assert meta["rows"]["base"] == len(GOOD_ROWS) - 3 + len(BAD_ROWS)
    # Lines pyarrow cannot split are set aside with their line numbers, and counted.
    assert meta["malformed_lines"] == len(MALFORMED_LINES)
    kept = [json.loads(x) for f in (out / "malformed").glob("*.jsonl") for x in f.open()]
    assert sorted(r["raw"] for r in kept) == sorted(MALFORMED_LINES)
    assert json.loads((out / "slices.json").read_text()) == meta


def test_an_item_is_listed_once_in_the_folder_it_arrives_in(tmp_path: Path) -> None:
    out, meta = _cut(tmp_path)
    ids = {
        name: sorted(pq.read_table(out / name / "items.parquet")["item_id"].to_pylist())
        for name in ("base", "slice-01", "slice-02")
    }
    # d is first engaged with at T0 + 9 days; e at T0 + 3 days, the base's last instant.
    assert ids == {"base": ["a", "b", "c", "e"], "slice-01": [], "slice-02": ["d"]}
    assert meta["items"] == {"base": 4, "slice-01": 0, "slice-02": 1}
    base = pq.read_table(out / "base" / "items.parquet")
    # The item layout round-trips: side features and labels come back under their names.
    assert {"dense_score", "cat_kind", "concepts", "topic_l1"} <= set(base.column_names)


def test_an_earlier_end_puts_what_follows_in_after_and_loses_nothing(tmp_path: Path) -> None:
    # 14 rows have a plausible timestamp; the 10th (0.7 of them) is at T0 + 3 days.
    out, meta = _cut(tmp_path, end_fraction=0.7)
    assert meta["end"] == T0 + 3 * DAY
    assert _rows(out / "after") == [("u1", "d"), ("u2", "e"), ("u3", "a")]
    assert pq.read_table(out / "after" / "items.parquet")["item_id"].to_pylist() == ["d"]
    assert sum(meta["rows"].values()) == len(GOOD_ROWS) + len(BAD_ROWS)
    assert sum(meta["items"].values()) == 5


def test_an_end_time_puts_the_slices_there_and_what_follows_in_after(tmp_path: Path) -> None:
    # The base ends at T0 + 1 day, the moment a catalog drop would start.
    out, meta = _cut(tmp_path, end=T0 + 7 * DAY)
    assert meta["bounds"] == [T0 + 1 * DAY, T0 + 4 * DAY, T0 + 7 * DAY]
    # (T0 + 1 day, T0 + 4 days]: the rows of days 2 to 4, the period's end included.
    assert _rows(out / "slice-01") == [
        ("u1", "c"),
        ("u2", "c"),
        ("u3", "a"),
        ("u3", "a"),
        ("u3", "e"),
    ]
    assert _rows(out / "slice-02") == []
    assert _rows(out / "after") == [("u1", "d"), ("u2", "e")]  # T0 + 9 and + 8 days
    assert sum(meta["rows"].values()) == len(GOOD_ROWS) + len(BAD_ROWS)


@pytest.mark.usefixtures("ray_local")
def test_prepare_reads_the_base_and_quarantines_its_bad_rows(tmp_path: Path) -> None:
    out, _ = _cut(tmp_path)
    cfg = build_config(
        overrides=[
            f"data.dataset=parquet:{out / 'base'}",
            f"data.data_dir={tmp_path / 'cache'}",
            "data.split.mode=timestamp",
            f"data.split.cut_timestamp={T0 + 2 * DAY}",
            "data.pairs.window=2",
            f"data.row_bounds.max_timestamp={BOUNDS[1]}",
        ]
    )
    stats = prepare(cfg, tmp_path / "run")
    assert stats["interactions"] == len(GOOD_ROWS) - 3
    assert {k: v for k, v in stats["quarantined"].items() if v} == dict(
        Counter(why for _, why in BAD_ROWS)
    )


def test_a_base_and_its_slices_read_as_one_dataset_in_order(tmp_path: Path) -> None:
    out, _ = _cut(tmp_path)
    joined = ParquetSource(f"{out / 'base'}+{out / 'slice-01'}+{out / 'slice-02'}").load(
        tmp_path / "cache"
    )
    # The base's catalog first, so its items keep their positions; then what arrived.
    assert joined.items["raw_id"].to_pylist() == ["a", "b", "c", "e", "d"]
    assert len(joined.logs.paths) == 3 and joined.logs.format == "parquet"
    assert joined.features.dense_names == ["score"]
    other = tmp_path / "other"
    (other / "interactions").mkdir(parents=True)
    pq.write_table(pa.table({"item_id": ["x"], "text": ["t"]}), other / "items.parquet")
    pq.write_table(
        pa.table({"user_id": ["u"], "item_id": ["x"], "timestamp": [T0]}),
        other / "interactions" / "part-0.parquet",
    )
    with pytest.raises(SchemaError, match="feature columns differ"):
        ParquetSource(f"{out / 'base'}+{other}").load(tmp_path / "cache")


@pytest.mark.usefixtures("ray_local")
def test_preparing_base_plus_slice_keeps_every_base_item_id(tmp_path: Path) -> None:
    out, meta = _cut(tmp_path)

    def item_ids(dataset: str, run: Path) -> list[str]:
        cfg = build_config(
            overrides=[
                f"data.dataset={dataset}",
                "data.split.mode=timestamp",
                f"data.split.cut_timestamp={meta['bounds'][0]}",  # the slices are T2
                "data.pairs.window=2",
                f"data.row_bounds.max_timestamp={BOUNDS[1]}",
            ]
        )
        stats = prepare(cfg, run)
        assert stats["quarantined"]["impossible_timestamp"] == 2
        items = pq.read_table(run / "data" / "items.parquet").sort_by("item_id")
        return items["raw_id"].to_pylist()

    base = item_ids(f"parquet:{out / 'base'}", tmp_path / "base-run")
    both = item_ids(
        f"parquet:{out / 'base'}+{out / 'slice-01'}+{out / 'slice-02'}", tmp_path / "both-run"
    )
    assert both[: len(base)] == base and both[len(base) :] == ["d"]
