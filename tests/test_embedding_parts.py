"""A stopped catalog encode resumes where it was (mtmh/content/parts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtmh.content import parts as parts_module
from mtmh.content.encode import embeddings_schema, read_embeddings, write_embeddings
from mtmh.content.parts import EmbeddingParts

DIM = 4


def _stream(blocks: list[np.ndarray], stop_at: int | None = None) -> Iterator[dict[str, Any]]:
    for k, ids in enumerate(blocks):
        if k == stop_at:
            raise RuntimeError("the job was stopped")
        n = len(ids)
        yield {
            "item_id": ids,
            "embedding": np.tile(ids[:, None], (1, DIM)).astype(np.float32),
            "content_features": np.zeros((n, DIM), np.float32),
            "has_text": ids % 2 == 0,
            "has_image": ids % 3 == 0,
            "image_error": ["" if i % 5 else "unreadable" for i in ids],
        }


def test_a_stopped_write_resumes_without_losing_or_repeating_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parts_module, "PART_ROWS", 20)
    out = tmp_path / "item_embeddings.parquet"
    blocks = [np.arange(i, i + 10) for i in range(0, 100, 10)]
    with pytest.raises(RuntimeError, match="stopped"):
        write_embeddings(_stream(blocks, stop_at=5), out, DIM, 100, "encoder-a")
    assert not out.exists()
    done = EmbeddingParts.open(out, embeddings_schema(DIM), "encoder-a").done_ids()
    assert sorted(done.tolist()) == list(range(50))  # every block appended before the stop

    rest = [b[~np.isin(b, done)] for b in blocks]
    counts = write_embeddings(_stream([b for b in rest if len(b)]), out, DIM, 100, "encoder-a")
    ids, vectors = read_embeddings(out)
    assert ids.tolist() == list(range(100))  # each item once
    np.testing.assert_array_equal(vectors[:, 0], np.arange(100))
    assert counts == {
        "items": 100,
        "no_text": 50,
        "with_image": 34,
        "no_content": 33,
        "image_unreadable": 20,
    }
    assert not out.with_suffix(".parts").exists()
    assert pq.read_schema(out) == embeddings_schema(DIM)


def test_parts_of_another_encoder_are_discarded(tmp_path: Path) -> None:
    out = tmp_path / "item_embeddings.parquet"
    with pytest.raises(RuntimeError):
        write_embeddings(
            _stream([np.arange(10), np.arange(10, 20)], stop_at=1), out, DIM, 20, "encoder-a"
        )
    schema = embeddings_schema(DIM)
    assert len(EmbeddingParts.open(out, schema, "encoder-a").done_ids()) == 10
    assert len(EmbeddingParts.open(out, schema, "encoder-b").done_ids()) == 0


def test_the_file_is_the_same_whatever_order_the_actors_finish_in(tmp_path: Path) -> None:
    blocks = [np.arange(i, i + 10) for i in range(0, 40, 10)]
    files = []
    for name, order in (("in_order", blocks), ("reversed", blocks[::-1])):
        out = tmp_path / name / "item_embeddings.parquet"
        out.parent.mkdir()
        write_embeddings(_stream(order), out, DIM, 40, "encoder-a")
        files.append(out.read_bytes())
    assert files[0] == files[1]
    ids = pq.read_table(tmp_path / "reversed" / "item_embeddings.parquet")["item_id"]
    assert ids.to_pylist() == list(range(40))
