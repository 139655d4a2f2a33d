from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtmh.data.sources.base import LogFiles
from mtmh.data.sources.parquet import SchemaError, read_item_table
from mtmh.data.validate import LogValidator, check_log_schema, stable_bucket
from tests.tiny_data import BAD_ROWS, ITEMS, T0, write_tiny_dataset


def _validator(available: list[int] | None = None) -> LogValidator:
    return LogValidator(
        item_raw_ids=pa.array(ITEMS),
        item_available_from=np.array(available or [np.iinfo(np.int64).min] * len(ITEMS)),
        min_timestamp=0,
        max_timestamp=T0 + 365 * 86_400,
        num_buckets=4,
        column_map={},
    )


def _batch(rows: list[tuple[str, str, str, str]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "user_id": cols[0],
            "item_id": cols[1],
            "timestamp": cols[2],
            "weight": cols[3],
            "path": ["log.csv"] * len(rows),
        }
    )


def test_each_bad_row_gets_its_reason_and_keeps_its_values() -> None:
    row_level = [(r, why) for r, why in BAD_ROWS if why != "duplicate"]  # dups need a bucket
    out = _validator()(_batch([r for r, _ in row_level]))
    assert out["reason"].to_pylist() == [why for _, why in row_level]
    assert out["bucket"].to_pylist() == [-1] * len(row_level)
    assert all(s == "log.csv" for s in out["source"].to_pylist())
    assert '"yesterday"' in out["raw"][2].as_py()  # the original value is kept verbatim
    assert out["user_raw"].null_count == len(row_level)


def test_valid_rows_are_typed_and_bucketed() -> None:
    out = _validator()(_batch([("u1", "c", f" {T0} ", "4.5"), ("7", "a", f"{T0}.9", "")]))
    assert out["reason"].null_count == 2
    assert out["item_id"].to_pylist() == [2, 0]
    assert out["timestamp"].to_pylist() == [T0, T0]
    assert out["weight"].to_pylist() == [4.5, 1.0]  # an empty optional weight means 1.0
    assert all(0 <= b < 4 for b in out["bucket"].to_pylist())


def test_interaction_before_item_arrival_is_impossible() -> None:
    out = _validator(available=[T0 + 10, 0, 0, 0, 0])(_batch([("u", "a", str(T0), "1")]))
    assert out["reason"].to_pylist() == ["impossible_timestamp"]
    assert "available_from" in out["detail"][0].as_py()


def test_bucket_is_stable_across_types_of_batch() -> None:
    ids = pa.array(["u1", "u2", "u1", "u3"])
    first = stable_bucket(ids, 8)
    assert first[0] == first[2]
    assert (stable_bucket(ids.slice(2), 8) == first[2:]).all()  # same id, same bucket anywhere


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item,timestamp\nu,a,1\n")
    with pytest.raises(SchemaError, match=r"logs\.csv: missing required column 'item_id'"):
        check_log_schema(LogFiles([path], "csv"))


def test_wrong_column_type_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "logs.parquet"
    pq.write_table(pa.table({"user_id": [1], "item_id": [2], "timestamp": [[1, 2]]}), path)
    with pytest.raises(SchemaError, match=r"logs\.parquet: column 'timestamp' has type list"):
        check_log_schema(LogFiles([path], "parquet"))


def test_a_truncated_parquet_file_is_one_error_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table({"user_id": [1] * 50, "item_id": [2] * 50, "timestamp": [3] * 50}), good
    )
    data = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])  # a copy that stopped half way
    with pytest.raises(SchemaError, match=r"cut\.parquet: not a readable parquet file"):
        check_log_schema(LogFiles([good, cut], "parquet"))
    items = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": [1, 2], "text": ["a", "b"]}), items)
    items.write_bytes(items.read_bytes()[:-20])
    with pytest.raises(SchemaError, match=r"items\.parquet: not a readable parquet table"):
        read_item_table(items)


def test_item_table_schema_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"item_id": [1, 2]}), tmp_path / "items.parquet")
    with pytest.raises(SchemaError, match="missing required column 'text'"):
        read_item_table(tmp_path / "items.parquet")
    pq.write_table(
        pa.table({"item_id": [1], "text": ["x"], "cat_k": [-1]}), tmp_path / "items.parquet"
    )
    with pytest.raises(SchemaError, match="'cat_k' must hold non-negative codes"):
        read_item_table(tmp_path / "items.parquet")


def test_item_table_features_and_labels(tmp_path: Path) -> None:
    items, spec = read_item_table(write_tiny_dataset(tmp_path) / "items.parquet")
    assert spec.dense_names == ["score"] and spec.categorical_names == ["kind"]
    assert spec.categorical_cardinalities == [3]
    assert items["topic_l1"].to_pylist()[3] == ["y", "z"]
    assert Counter(len(x) for x in items["dense"].to_pylist()) == {1: 5}


def test_a_repeated_catalog_id_is_quarantined_whole_and_counted_apart() -> None:
    import json

    from mtmh.data.prepare import assign_item_ids
    from mtmh.data.sources.base import RAW_ITEMS

    rows = [("a", "first text"), ("b", "other"), ("a", "a different text for a"), ("", "none")]
    raw = pa.table(
        {
            "raw_id": [r for r, _ in rows],
            "text": [t for _, t in rows],
            "image_uri": pa.nulls(4, pa.string()),
            "concepts": [[]] * 4,
            "dense": [[]] * 4,
            "categorical": [[]] * 4,
            "topic_l1": [[]] * 4,
            "topic_l2": [[]] * 4,
            "available_from": pa.nulls(4, pa.int64()),
        },
        schema=RAW_ITEMS,
    )
    kept, quarantine = assign_item_ids(raw)
    assert kept["raw_id"].to_pylist() == ["a", "b"] and kept["item_id"].to_pylist() == [0, 1]
    assert kept["text"].to_pylist() == ["first text", "other"]  # the first row of "a" wins
    assert quarantine["reason"].to_pylist() == ["duplicate_item_id", "missing_field"]
    assert json.loads(quarantine["raw"][0].as_py())["text"] == "a different text for a"
