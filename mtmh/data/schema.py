"""One schema for every dataset: the tables `prepare_data` writes under `RUN/data/`.

Layout of `RUN/data/`:
    items.parquet            ITEMS: one row per catalog item, contiguous `item_id` 0..N-1
    users/part-*.parquet     USERS: contiguous `user_id` 0..U-1 with the original id
    t1/part-*.parquet        INTERACTIONS in the training period T1
    t2/part-*.parquet        INTERACTIONS in the test period T2
    pairs/part-*.parquet     PAIRS: positive (trigger, target) pairs from T1 histories
    quarantine/*.parquet     QUARANTINE: every rejected row, with its reason and raw values
    item_features.json       names and cardinalities of the item features
    stats.json               counts (see prepare.py), config.yaml: the config that made them

`topic_l1`/`topic_l2` are evaluation labels: nothing upstream of evaluation may read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

# Columns a raw interaction log must have; `weight` is optional (1.0 when absent).
LOG_REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
LOG_OPTIONAL_COLUMNS = ("weight",)

INTERACTIONS = pa.schema(
    [
        ("user_id", pa.int32()),
        ("item_id", pa.int32()),
        ("timestamp", pa.int64()),  # epoch seconds
        ("weight", pa.float32()),  # explicit feedback where the source has it (MovieLens rating)
    ]
)

PAIRS = pa.schema(
    [
        ("user_id", pa.int32()),
        ("trigger_id", pa.int32()),  # the earlier item (what the user engaged with)
        ("target_id", pa.int32()),  # the later item (what retrieval should return)
        ("gap", pa.int16()),  # positions between them in the user's T1 history (1..window)
        ("target_timestamp", pa.int64()),
    ]
)

ITEMS = pa.schema(
    [
        ("item_id", pa.int32()),
        ("raw_id", pa.string()),  # the dataset's own id
        ("text", pa.string()),  # what the content encoder reads (never the topic labels)
        ("image_uri", pa.string()),  # local path or file:// URL, null when there is none
        # Concept strings for the content encoder's concept tower (tags, knowledge-graph facts);
        # never the topic labels. Empty when the dataset has none.
        ("concepts", pa.list_(pa.string())),
        ("dense", pa.list_(pa.float32())),  # float features, names in item_features.json
        ("categorical", pa.list_(pa.int32())),  # categorical features as codes
        ("topic_l1", pa.list_(pa.string())),  # EVALUATION ONLY: coarse topic labels
        ("topic_l2", pa.list_(pa.string())),  # EVALUATION ONLY: fine topic labels
        ("available_from", pa.int64()),  # source-given arrival time, null when unknown
        ("first_seen", pa.int64()),  # arrival time, else first valid interaction; null if none
        ("interactions", pa.int64()),  # valid interactions over T1 and T2
        ("t1_interactions", pa.int64()),  # valid interactions in T1 (popularity for logQ)
    ]
)

USERS = pa.schema(
    [
        ("user_id", pa.int32()),
        ("raw_id", pa.string()),
        ("t1_interactions", pa.int32()),
        ("t2_interactions", pa.int32()),
        ("is_eval", pa.bool_()),  # history in both T1 and T2
    ]
)

QUARANTINE = pa.schema(
    [
        ("reason", pa.string()),  # one of QUARANTINE_REASONS
        ("detail", pa.string()),  # which field, and why
        ("source", pa.string()),  # file the row came from
        ("raw", pa.string()),  # the row's original values as JSON (or the raw line)
    ]
)

QUARANTINE_REASONS = (
    "malformed_row",  # a text line with the wrong number of fields
    "missing_field",  # user, item or timestamp is null or empty
    "unparseable_field",  # timestamp or weight is not a finite number
    "unknown_item",  # item id not in the item table
    "impossible_timestamp",  # outside validation bounds, or before the item existed
    "duplicate",  # exact copy of an earlier row (same user, item, timestamp, weight)
    "duplicate_item_id",  # an item table row whose id an earlier row already has
)


@dataclass(frozen=True)
class ItemFeatureSpec:
    """Names of the `dense` and `categorical` item features and each categorical's cardinality."""

    dense_names: list[str] = field(default_factory=list)
    categorical_names: list[str] = field(default_factory=list)
    categorical_cardinalities: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.categorical_names) != len(self.categorical_cardinalities):
            raise ValueError("each categorical feature needs exactly one cardinality")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
