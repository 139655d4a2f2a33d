"""`parquet:PATH`: a user's own item table and interaction logs.

Layout under PATH:
    items.parquet (or items/*.parquet)
        item_id        int or string, required
        text           string, required (what the content encoder reads)
        image_uri      string, optional
        concepts       list<string> or "|"-separated string, optional: tags, queries or facts
                       for the content encoder's concept tower (never the topic labels)
        available_from int epoch seconds, optional (interactions before it are impossible)
        topic_l1/_l2   list<string> or "|"-separated string, optional, EVALUATION ONLY
        dense_<name>   float columns -> dense features
        cat_<name>     non-negative integer codes -> categorical features
    interactions/ (or interactions.parquet / .csv / .tsv)
        user_id, item_id, timestamp (epoch seconds), weight (optional); parquet, csv or tsv

A missing required column or a column of the wrong type is a `SchemaError` naming the file and
the column; bad values inside rows are the validator's business (they are quarantined).

`parquet:A+B+...` reads several such folders as one dataset, in order: the catalogs one after
the other (so an item keeps the id it had with A alone, and B's items come after) and every
folder's logs. That is a base and the slices after it (mtmh/data/slices.py) trained as one.
The folders must share their feature columns and log format.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtmh.data.schema import ItemFeatureSpec
from mtmh.data.sources.base import RAW_ITEMS, LogFiles, LogFormat, SourceData
from mtmh.errors import MtmhError


class SchemaError(MtmhError, ValueError):
    """An input table lacks a required column or has one of the wrong type."""


def _labels(table: pa.Table, name: str, path: Path) -> pa.Array:
    """An optional string-list column, given as a list or a '|'-separated string."""
    if name not in table.column_names:
        return pa.array([[] for _ in range(table.num_rows)], type=pa.list_(pa.string()))
    col = table[name].combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        parts = pc.split_pattern(pc.fill_null(col, ""), "|")
        # "" -> [] rather than [""]: an empty cell means no labels.
        return pa.array(
            [[v for v in row if v] for row in parts.to_pylist()], type=pa.list_(pa.string())
        )
    if pa.types.is_list(col.type) and pa.types.is_string(col.type.value_type):
        return col
    raise SchemaError(
        f"{path}: column {name!r} must be a string list or '|'-separated string, not {col.type}"
    )


def _column(table: pa.Table, name: str, path: Path, kinds: tuple[str, ...]) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise SchemaError(f"{path}: missing required column {name!r}")
    col = table[name]
    checks = {
        "int": pa.types.is_integer,
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    }
    if not any(checks[k](col.type) for k in kinds):
        raise SchemaError(
            f"{path}: column {name!r} has type {col.type}, expected {'/'.join(kinds)}"
        )
    return col


def read_item_table(path: Path) -> tuple[pa.Table, ItemFeatureSpec]:
    """Convert a user's item table to RAW_ITEMS plus the names of its feature columns."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:  # truncated, or not parquet at all
        raise SchemaError(f"{path}: not a readable parquet table ({err})") from err
    raw_id = _column(table, "item_id", path, ("int", "string")).cast(pa.string())
    text = _column(table, "text", path, ("string",)).cast(pa.string())
    dense_names = sorted(c for c in table.column_names if c.startswith("dense_"))
    cat_names = sorted(c for c in table.column_names if c.startswith("cat_"))
    n = table.num_rows
    dense_cols = [_column(table, c, path, ("float",)).cast(pa.float32()) for c in dense_names]
    cat_cols = [_column(table, c, path, ("int",)).cast(pa.int32()) for c in cat_names]
    for name, col in zip(cat_names, cat_cols, strict=True):
        if col.null_count or (n and pc.min(col).as_py() < 0):
            raise SchemaError(f"{path}: column {name!r} must hold non-negative codes, no nulls")
    dense = [list(r) for r in zip(*(c.to_pylist() for c in dense_cols), strict=True)] or [[]] * n
    cats = [list(r) for r in zip(*(c.to_pylist() for c in cat_cols), strict=True)] or [[]] * n
    available = (
        _column(table, "available_from", path, ("int",)).cast(pa.int64())
        if "available_from" in table.column_names
        else pa.nulls(n, pa.int64())
    )
    image = (
        _column(table, "image_uri", path, ("string",)).cast(pa.string())
        if "image_uri" in table.column_names
        else pa.nulls(n, pa.string())
    )
    items = pa.Table.from_arrays(
        [
            raw_id,
            text,
            image,
            _labels(table, "concepts", path),
            pa.array(dense, type=pa.list_(pa.float32())),
            pa.array(cats, type=pa.list_(pa.int32())),
            _labels(table, "topic_l1", path),
            _labels(table, "topic_l2", path),
            available,
        ],
        schema=RAW_ITEMS,
    )
    spec = ItemFeatureSpec(
        dense_names=[c.removeprefix("dense_") for c in dense_names],
        categorical_names=[c.removeprefix("cat_") for c in cat_names],
        categorical_cardinalities=[int(pc.max(c).as_py() or 0) + 1 for c in cat_cols],
    )
    return items, spec


def find_logs(root: Path) -> LogFiles:
    """The interaction files under `root`: a folder `interactions/` or a single file."""
    folder = root / "interactions"
    formats: dict[str, LogFormat] = {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv"}
    for suffix, fmt in formats.items():
        if folder.is_dir():
            files = sorted(folder.rglob(f"*{suffix}"))
        else:
            single = root / f"interactions{suffix}"
            files = [single] if single.is_file() else []
        if files:
            return LogFiles(files, fmt)
    raise FileNotFoundError(
        f"{root}: no interaction logs (expected interactions/ with .parquet/.csv/.tsv files, "
        "or interactions.parquet/.csv/.tsv)"
    )


class ParquetSource:
    """A dataset laid out as described in this module's docstring, or several ("A+B")."""

    def __init__(self, root: str | Path) -> None:
        self.roots = [Path(r).expanduser() for r in str(root).split("+")]
        self.name = "parquet:" + "+".join(str(r) for r in self.roots)

    def load(self, cache_dir: Path) -> SourceData:
        del cache_dir  # the user's files are read in place
        parts = [_load_folder(r) for r in self.roots]
        if len(parts) == 1:
            return parts[0]
        return _joined(parts)


def _load_folder(root: Path) -> SourceData:
    items_path = root / "items.parquet"
    if not items_path.exists() and (root / "items").is_dir():
        items_path = root / "items"
    if not items_path.exists():
        raise FileNotFoundError(f"{root}: no items.parquet (or items/) found")
    items, spec = read_item_table(items_path)
    return SourceData(items, spec, find_logs(root), f"parquet tables under {root}")


def _joined(parts: list[SourceData]) -> SourceData:
    """Several folders as one dataset: catalogs and logs in order."""
    first = parts[0]
    for part in parts[1:]:
        if (part.features.dense_names, part.features.categorical_names) != (
            first.features.dense_names,
            first.features.categorical_names,
        ):
            raise SchemaError(
                f"{part.description}: feature columns differ from {first.description}'s"
            )
        if part.logs.format != first.logs.format:
            raise SchemaError(
                f"{part.description}: {part.logs.format} logs, {first.description} has "
                f"{first.logs.format}"
            )
    per_part = (p.features.categorical_cardinalities for p in parts)
    cardinalities = [max(c) for c in zip(*per_part, strict=True)]
    spec = ItemFeatureSpec(
        dense_names=first.features.dense_names,
        categorical_names=first.features.categorical_names,
        categorical_cardinalities=cardinalities,
    )
    return SourceData(
        pa.concat_tables([p.items for p in parts]),
        spec,
        LogFiles([f for p in parts for f in p.logs.paths], first.logs.format),
        " + ".join(p.description for p in parts),
    )
