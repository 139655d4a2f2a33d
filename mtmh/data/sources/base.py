"""The one interface every dataset implements: an item catalog plus interaction log files.

A source only locates and describes data; validation, id mapping, the split and pairs are the
same code for every dataset (mtmh/data/prepare.py). The catalog is small enough for one process
(a few million items at most); the logs are only ever streamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa

from mtmh.data.schema import ItemFeatureSpec

# The catalog a source returns: ITEMS without the columns prepare computes (ids, counts).
RAW_ITEMS = pa.schema(
    [
        ("raw_id", pa.string()),
        ("text", pa.string()),
        ("image_uri", pa.string()),
        ("concepts", pa.list_(pa.string())),
        ("dense", pa.list_(pa.float32())),
        ("categorical", pa.list_(pa.int32())),
        ("topic_l1", pa.list_(pa.string())),
        ("topic_l2", pa.list_(pa.string())),
        ("available_from", pa.int64()),
    ]
)

LogFormat = Literal["csv", "tsv", "parquet"]


@dataclass(frozen=True)
class LogFiles:
    """Where a dataset's interaction log lives and how its columns map to our schema."""

    paths: list[Path]
    format: LogFormat
    # source column name -> schema name (user_id, item_id, timestamp, weight); unmapped
    # columns are ignored.
    column_map: dict[str, str] = field(default_factory=dict)

    def schema_name(self, source_column: str) -> str:
        return self.column_map.get(source_column, source_column)


@dataclass(frozen=True)
class SourceData:
    """What a source hands to `prepare`: the raw catalog, its feature names and the logs."""

    items: pa.Table  # RAW_ITEMS
    features: ItemFeatureSpec
    logs: LogFiles
    description: str  # one line for summaries: where the data came from


class DatasetSource(Protocol):
    """A dataset: `load` fetches or generates what is needed under `cache_dir`."""

    name: str

    def load(self, cache_dir: Path) -> SourceData: ...


def raw_items_table(columns: dict[str, list[object]]) -> pa.Table:
    """Build a RAW_ITEMS table from python lists, filling absent optional columns with nulls."""
    n = len(columns["raw_id"])
    arrays = []
    for fld in RAW_ITEMS:
        values = columns.get(fld.name)
        if values is None:
            values = [[] for _ in range(n)] if pa.types.is_list(fld.type) else [None] * n
        arrays.append(pa.array(values, type=fld.type))
    return pa.Table.from_arrays(arrays, schema=RAW_ITEMS)
