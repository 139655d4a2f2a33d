"""What a person sees of the served catalog: each item's raw id, title and topic labels, and a
title search. The explore page (serve_app/explore.py) reads it; the API maps raw ids with it.

The title is the first line of the item's text (MovieLens: "Toy Story (1995)"); an item
without text is shown by its raw id. Topic labels (`topic_l1`) are display only here: they
are the evaluation's labels and never reach a model.

Titles stay one Arrow string array, searched with Arrow's vectorised substring match: at a
million items a search is a few tens of milliseconds and costs no Python string per item.

Example:
    catalog = ItemCatalog.open(Path("runs/ml-100k"))
    catalog.search("toy story", limit=5)      # [0, 421, ...] (most interacted first)
    catalog.describe([0])[0].title            # "Toy Story (1995)"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtmh.errors import ArtifactError


class UnknownRawIdError(KeyError):
    """Raw ids that are not in the catalog; `ids` names them."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.ids = ids

    def __str__(self) -> str:
        shown = ", ".join(map(repr, self.ids[:10])) + (" ..." if len(self.ids) > 10 else "")
        return f"unknown raw_id {shown}"


@dataclass(frozen=True)
class ItemInfo:
    item_id: int
    raw_id: str
    title: str
    topics: list[str]
    interactions: int  # in the whole log (0 where the catalog does not record it)


@dataclass(frozen=True)
class ItemCatalog:
    raw_ids: list[str]  # item id -> raw id (a list: every response maps through it)
    raw_index: dict[str, int]  # raw id -> item id
    titles: pa.StringArray  # item id -> title
    topics: pa.ListArray | None  # item id -> topic labels, where the catalog has them
    interactions: np.ndarray  # item id -> interaction count (int64)

    @classmethod
    def open(cls, run_dir: Path) -> ItemCatalog:
        path = run_dir / "data" / "items.parquet"
        names = set(pq.read_schema(path).names)
        wanted = ["item_id", "raw_id"] + [
            c for c in ("text", "topic_l1", "interactions") if c in names
        ]
        table = pq.read_table(path, columns=wanted).sort_by("item_id")
        ids = table["item_id"].to_numpy()
        if not np.array_equal(ids, np.arange(len(ids))):
            raise ArtifactError(f"{path}: item_id is not 0..{len(ids) - 1}")
        raw = table["raw_id"].cast(pa.string())
        raw_ids = raw.to_pylist()
        if "text" in names:
            first_line = pc.list_element(pc.split_pattern(table["text"], "\n", max_splits=1), 0)
            titles = pc.if_else(pc.is_valid(first_line), first_line, raw)
        else:
            titles = raw
        return cls(
            raw_ids=raw_ids,
            raw_index={r: i for i, r in enumerate(raw_ids)},
            titles=titles.combine_chunks(),
            topics=table["topic_l1"].combine_chunks() if "topic_l1" in names else None,
            interactions=(
                table["interactions"].fill_null(0).to_numpy().astype(np.int64)
                if "interactions" in names
                else np.zeros(len(raw_ids), np.int64)
            ),
        )

    def __len__(self) -> int:
        return len(self.raw_ids)

    def item_ids(self, raw: Sequence[str]) -> list[int]:
        """Catalog ids of `raw`, or UnknownRawIdError naming every unknown one."""
        unknown = sorted({r for r in raw if r not in self.raw_index})
        if unknown:
            raise UnknownRawIdError(unknown)
        return [self.raw_index[r] for r in raw]

    def search(self, query: str, limit: int) -> list[int]:
        """Items whose title contains `query` (case-insensitive), most interacted first; an
        exact raw id comes first of all."""
        query = query.strip()
        if not query:
            return []
        mask = pc.match_substring(self.titles, query, ignore_case=True).to_numpy(
            zero_copy_only=False
        )
        hits = np.flatnonzero(mask)
        # Stable: equally popular items keep catalog order.
        hits = hits[np.argsort(-self.interactions[hits], kind="stable")]
        exact = self.raw_index.get(query)
        found = [] if exact is None else [exact]
        found += [int(i) for i in hits[: limit + 1] if i != exact]
        return found[:limit]

    def describe(self, item_ids: Sequence[int]) -> list[ItemInfo]:
        ids = pa.array(item_ids, pa.int64())
        titles = self.titles.take(ids).to_pylist()
        topics = self.topics.take(ids).to_pylist() if self.topics is not None else [None] * len(ids)
        return [
            ItemInfo(int(i), self.raw_ids[i], t, list(ts or []), int(self.interactions[i]))
            for i, t, ts in zip(item_ids, titles, topics, strict=True)
        ]
