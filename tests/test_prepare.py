"""prepare() end to end through a local Ray on tiny data, and on real ml-100k."""

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mtmh.config import build_config
from mtmh.data.prepare import prepare
from mtmh.data.sources import SchemaError
from tests.tiny_data import BAD_ROWS, GOOD_ROWS, MALFORMED_LINES, T0, write_tiny_dataset

DAY = 86_400


def _prepare(tmp_path: Path, root: Path, *extra: str) -> dict:
    cfg = build_config(
        overrides=[
            f"data.dataset=parquet:{root}",
            f"data.data_dir={tmp_path / 'cache'}",
            "data.split.mode=timestamp",
            f"data.split.cut_timestamp={T0 + 5 * DAY}",
            "data.pairs.window=2",
            "data.rows_per_bucket=1000",
            *extra,
        ]
    )
    return prepare(cfg, tmp_path / "run")


@pytest.mark.usefixtures("ray_local")
def test_prepare_counts_splits_and_quarantines(tmp_path: Path) -> None:
    stats = _prepare(tmp_path, write_tiny_dataset(tmp_path / "src"))
    data = tmp_path / "run" / "data"
    expected = Counter(why for _, why in BAD_ROWS)
    expected["malformed_row"] = len(MALFORMED_LINES)
    assert {k: v for k, v in stats["quarantined"].items() if v} == dict(expected)
    assert stats["interactions"] == len(GOOD_ROWS)
    assert stats["rows_read"] == len(GOOD_ROWS) + len(BAD_ROWS) + len(MALFORMED_LINES)
    assert (stats["users"], stats["items"], stats["catalog_items"]) == (3, 5, 5)
    assert (stats["t1_interactions"], stats["t2_interactions"]) == (8, 2)
    assert stats["eval_users"] == 2  # u1 and u2 have history in both periods
    # u1: a b c -> (a,b),(b,c),(a,c); u2: b c -> (b,c); u3: a e a -> (a,e),(e,a); a->a dropped
    assert stats["pairs"] == 6

    quarantine = pq.read_table(data / "quarantine")
    assert quarantine.num_rows == sum(expected.values())  # every bad row is kept...
    raw = " ".join(quarantine["raw"].to_pylist())
    assert "yesterday" in raw and "u9,a,1,1,extra" in raw  # ...with its original values

    users = pq.read_table(data / "users").sort_by("user_id")
    assert users["user_id"].to_pylist() == [0, 1, 2]  # contiguous
    assert sorted(users["raw_id"].to_pylist()) == ["u1", "u2", "u3"]
    items = pq.read_table(data / "items.parquet")
    assert items["item_id"].to_pylist() == [0, 1, 2, 3, 4]
    assert items["interactions"].to_pylist() == [3, 2, 2, 1, 2]
    assert items["first_seen"].to_pylist()[0] == T0
    t1 = pq.read_table(data / "t1")
    assert t1["timestamp"].to_numpy().max() < stats["cut_timestamp"]
    assert json.loads((data / "stats.json").read_text()) == stats
    assert (data / "config.yaml").exists()


@pytest.mark.usefixtures("ray_local")
def test_clean_log_quarantines_nothing(tmp_path: Path) -> None:
    stats = _prepare(tmp_path, write_tiny_dataset(tmp_path / "src", with_bad_rows=False))
    assert sum(stats["quarantined"].values()) == 0
    assert stats["interactions"] == stats["rows_read"] == len(GOOD_ROWS)


@pytest.mark.usefixtures("ray_local")
def test_log_missing_a_column_stops_with_its_name(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "src")
    (root / "interactions.csv").write_text("user_id,item_id,weight\nu1,a,1\n")
    with pytest.raises(
        SchemaError, match=r"interactions\.csv: missing required column 'timestamp'"
    ):
        _prepare(tmp_path, root)


@pytest.mark.usefixtures("ray_local")
def test_ml100k_counts(tmp_path: Path) -> None:
    cfg = build_config(overrides=["data.dataset=ml-100k"])
    stats = prepare(cfg, tmp_path / "run")
    assert (stats["interactions"], stats["users"], stats["items"]) == (100_000, 943, 1_682)
    assert stats["t1_interactions"] + stats["t2_interactions"] == 100_000
    assert sum(stats["quarantined"].values()) == 0
    items = pq.read_table(tmp_path / "run" / "data" / "items.parquet")
    # Genres are evaluation labels: they must not leak into the text the encoder reads.
    first = items.slice(0, 1).to_pylist()[0]
    lines = first["text"].splitlines()
    assert lines[0] == "Toy Story (1995)" and "Animation" in first["topic_l1"]
    assert any(line.startswith("starring m.") for line in lines[1:])  # Freebase facts
    assert not set(first["topic_l2"]) & {w for line in lines for w in line.split()}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_ml1m_counts(tmp_path: Path) -> None:
    stats = prepare(build_config(overrides=["data.dataset=ml-1m"]), tmp_path / "run")
    assert (stats["interactions"], stats["users"], stats["items"]) == (1_000_209, 6_040, 3_706)


@pytest.mark.usefixtures("ray_local")
def test_malformed_lines_keep_their_file(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "src", with_bad_rows=False)
    logs = root / "interactions"
    logs.mkdir()
    (root / "interactions.csv").rename(logs / "a.csv")
    (logs / "b.csv").write_text(f"user_id,item_id,timestamp\nu7,a,{T0}\nu7,b\n")
    stats = _prepare(tmp_path, root)
    assert stats["quarantined"]["malformed_row"] == 1
    assert stats["interactions"] == len(GOOD_ROWS) + 1
    bad = pq.read_table(tmp_path / "run" / "data" / "quarantine").to_pylist()
    assert bad[0]["source"].endswith("b.csv") and bad[0]["raw"] == "u7,b"


@pytest.mark.usefixtures("ray_local")
def test_a_log_with_no_valid_row_is_one_error_saying_where_the_rows_went(tmp_path: Path) -> None:
    import pyarrow as pa

    root = tmp_path / "src"
    root.mkdir()
    pq.write_table(pa.table({"item_id": ["a", "b"], "text": ["x", "y"]}), root / "items.parquet")
    (root / "interactions.csv").write_text(f"user_id,item_id,timestamp\nu1,zz,{T0}\n")
    with pytest.raises(SchemaError, match=r"no valid interactions in 1 log file.*unknown_item=1"):
        _prepare(tmp_path, root)
    assert (tmp_path / "run" / "data" / "quarantine").is_dir()  # the row is kept there
