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
