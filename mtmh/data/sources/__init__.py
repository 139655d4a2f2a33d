"""Datasets behind one interface (`DatasetSource.load -> SourceData`); `get_source` picks one."""

from __future__ import annotations

from mtmh.config import DataConfig
from mtmh.data.sources.base import DatasetSource, LogFiles, SourceData
from mtmh.data.sources.movielens import MovieLens1M, MovieLens100K
from mtmh.data.sources.parquet import ParquetSource, SchemaError
from mtmh.data.sources.synthetic import SyntheticSource

__all__ = ["DatasetSource", "LogFiles", "SchemaError", "SourceData", "get_source"]


def get_source(cfg: DataConfig) -> DatasetSource:
    """The source named by `cfg.dataset` (validated by DataConfig)."""
    if cfg.dataset == "ml-100k":
        return MovieLens100K()
    if cfg.dataset == "ml-1m":
        return MovieLens1M()
    if cfg.dataset == "synthetic":
        return SyntheticSource(cfg.synthetic)
    return ParquetSource(cfg.dataset.removeprefix("parquet:"))
