"""Typed, frozen run configuration: one dataclass per stage, composed into `RunConfig`.

Configs are validated once, when loaded, by pydantic: an unknown key or a value of the wrong
type or range is a `ConfigError` that names the dotted key. Every artifact directory gets the
config that produced it (`save_config`), so a stage can tell whether its artifact is current.

Example:
    cfg = load_config("mtmh/configs/default.yaml", overrides=["data.dataset=ml-1m"])
    save_config(cfg, run_dir / "data" / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid")

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "default.yaml"


class ConfigError(ValueError):
    """A config file, override or value is invalid; the message names the key."""


@dataclass(frozen=True, config=_STRICT)
class SyntheticConfig:
    """Generator knobs for the `synthetic` dataset (see mtmh/data/sources/synthetic.py)."""

    num_items: Annotated[int, Field(ge=10)] = 20_000  # catalog size
    num_users: Annotated[int, Field(ge=1)] = 5_000
    num_interactions: Annotated[int, Field(ge=1)] = 500_000  # total log rows before any split
    num_topics_l1: Annotated[int, Field(ge=1)] = 12  # coarse topics (eval labels only)
    topics_l2_per_l1: Annotated[int, Field(ge=1)] = 6  # fine topics under each coarse topic
    topics_per_user: Annotated[int, Field(ge=1)] = 2  # L2 interests each user draws from
    popularity_exponent: Annotated[float, Field(gt=0.0)] = 1.1  # Zipf exponent of popularity
    # Share of events drawn from global popularity regardless of the user's topics: the
    # cross-topic co-engagement that pulls co-engagement models off-topic.
    popular_cross_topic_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    fresh_item_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1  # arrive mid-log
    span_days: Annotated[int, Field(ge=1)] = 120  # length of the log in days
    start_timestamp: int = 1_600_000_000  # first event time (epoch seconds)
    # Rows per interaction shard: bounds the generator's memory.
    shard_rows: Annotated[int, Field(ge=1_000)] = 2_000_000
    seed: int = 0


@dataclass(frozen=True, config=_STRICT)
class SplitConfig:
    """Time split of the log into T1 (train) and T2 (test)."""

    # "quantile": T1 holds the first `t1_fraction` of interactions by time (the cut is rounded
    # to the hour); "timestamp": T1 is everything strictly before `cut_timestamp`.
    mode: Literal["quantile", "timestamp"] = "quantile"
    t1_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    cut_timestamp: int | None = None

    @model_validator(mode="after")
    def _cut_given_when_needed(self) -> SplitConfig:
        if self.mode == "timestamp" and self.cut_timestamp is None:
            raise ValueError("split.mode=timestamp needs split.cut_timestamp")
        return self


@dataclass(frozen=True, config=_STRICT)
class ValidationConfig:
    """Bounds that make a log row's timestamp impossible."""

    min_timestamp: int = 0  # epoch seconds; earlier rows are quarantined
    # Latest acceptable timestamp; None means "now + max_future_seconds" at prepare time.
    max_timestamp: int | None = None
    max_future_seconds: Annotated[int, Field(ge=0)] = 86_400


@dataclass(frozen=True, config=_STRICT)
class PairConfig:
    """Positive-pair construction from each user's T1 history."""

    # Each item is paired with its previous `window` items (the paper pairs the T-th item with
    # all T-1 before it; a window bounds the quadratic growth on long histories).
    window: Annotated[int, Field(ge=1)] = 10


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    """What to prepare and how: dataset, split, validation, pairs and pipeline sizing."""

    # "ml-100k", "ml-1m", "synthetic" or "parquet:PATH".
    dataset: str = "ml-100k"
    # Cache for fetched wheels, extracted files and generated data; None -> $MTMH_DATA_DIR or
    # ~/.cache/mtmh.
    data_dir: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()
    pairs: PairConfig = PairConfig()
    # Users are hashed into buckets so that one task sees a user's whole history; the bucket
    # count grows with the input so each bucket (and so peak memory) stays bounded.
    rows_per_bucket: Annotated[int, Field(ge=1_000)] = 1_000_000
    max_buckets: Annotated[int, Field(ge=1)] = 512

    @model_validator(mode="after")
    def _known_dataset(self) -> DataConfig:
        if self.dataset not in ("ml-100k", "ml-1m", "synthetic") and not (
            self.dataset.startswith("parquet:") and len(self.dataset) > len("parquet:")
        ):
            raise ValueError(
                f"data.dataset={self.dataset!r}: expected ml-100k, ml-1m, synthetic or parquet:PATH"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class RayConfig:
    """How jobs reach Ray and how much of the machine each piece may take."""

    address: str | None = None  # None starts (or joins, under `ray job submit`) a local Ray
    num_cpus: int | None = None  # cap for a local Ray; None = all cores
    # Object store of a local Ray (MiB); None lets Ray size it (30% of memory).
    object_store_memory_mb: Annotated[int | None, Field(ge=256)] = 2_048
    data_task_cpus: Annotated[float, Field(gt=0.0)] = 1.0  # CPUs per Ray Data task
    dashboard: bool = False  # start the Ray dashboard with a local Ray
    omp_num_threads: Annotated[int, Field(ge=1)] = 1  # thread cap per worker (BLAS, torch)


@dataclass(frozen=True, config=_STRICT)
class RunConfig:
    """The whole configuration of one run; each stage reads its own section."""

    data: DataConfig = DataConfig()
    ray: RayConfig = RayConfig()
    seed: int = 0


_ADAPTER = TypeAdapter(RunConfig)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (YAML/JSON friendly)."""
    return dataclasses.asdict(cfg)


def config_hash(section: Any) -> str:
    """Stable short hash of a config section, to tell whether an artifact is current."""
    blob = json.dumps(config_to_dict(section), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. data.pairs.window=20")
    # YAML parsing gives ints, floats, bools, null and lists their natural types.
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def _set_path(tree: dict[str, Any], path: list[str], value: Any, dotted: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "unexpected_keyword_argument" or e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config:\n" + "\n".join(lines)


def build_config(tree: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Validate a nested dict plus `a.b=c` overrides into a `RunConfig`."""
    merged: dict[str, Any] = json.loads(json.dumps(dict(tree or {})))  # deep copy
    for text in overrides:
        path, value = _parse_override(text)
        _set_path(merged, path, value, text)
    try:
        return _ADAPTER.validate_python(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Load a YAML config (default: the packaged default.yaml) and apply overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return build_config(tree, overrides)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a config (any section) as YAML next to the artifact it produced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
