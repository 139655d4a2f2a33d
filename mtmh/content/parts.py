"""A catalog's embeddings written as they come, in closed part files, so that an encode that
is stopped (a killed job, a lost node) resumes where it was instead of starting over.

    RUN/content/item_embeddings.parts/
        encoder.txt          the digest of the encoder that wrote the parts
        part-00000.parquet   PART_ROWS rows each (the last one fewer), each written whole
        ...

A part becomes visible only once complete (written as .tmp, then renamed), so every visible
part is readable. Parts written by another encoder are discarded. `finish` streams the parts
into the one embeddings file, counts what stats.json reports, and removes the folder.

At 1M items, the shipped text encoder on 2 CPUs embeds for about 75 minutes: a stop near
the end cost all of it before.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)
PART_ROWS = 50_000
DIGEST_FILE = "encoder.txt"


def folder_digest(folder: Path) -> str:
    """sha256 over every file's name and bytes under `folder` (the encoder's identity)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class EmbeddingParts:
    folder: Path
    schema: pa.Schema
    part_rows: int
    _buffer: list[pa.Table] = field(default_factory=list)

    @classmethod
    def open(
        cls, target: Path, schema: pa.Schema, digest: str, part_rows: int | None = None
    ) -> EmbeddingParts:
        """The parts of `target` written by the encoder `digest`; others are discarded."""
        folder = target.with_suffix(".parts")
        marker = folder / DIGEST_FILE
        if folder.exists() and (not marker.is_file() or marker.read_text() != digest):
            log.info("discarding %s: written by another encoder", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest)
        for unfinished in folder.glob("*.tmp"):
            unfinished.unlink()
        return cls(folder, schema, part_rows or PART_ROWS)

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def done_ids(self) -> np.ndarray:
        """Item ids in the parts written so far."""
        ids = [pq.read_table(p, columns=["item_id"])["item_id"].to_numpy() for p in self._parts()]
        return np.concatenate(ids) if ids else np.zeros(0, np.int32)

    @contextmanager
    def appending(self) -> Iterator[Callable[[pa.Table], None]]:
        """An `append(table)`; a part is closed every `part_rows` rows, at the end, and when
        the writing stops on an error (what was appended is complete, so it is kept)."""

        def append(table: pa.Table) -> None:
            self._buffer.append(table)
            if sum(t.num_rows for t in self._buffer) >= self.part_rows:
                self._flush()

        try:
            yield append
        finally:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        # In item order, not the order the embedding actors finished: a catalog that fits in
        # one part is then written byte for byte the same by every run, so its version (a
        # hash of the file's bytes, mtmh/embeddings.py) names its vectors, not the schedule.
        table = pa.concat_tables(self._buffer).sort_by("item_id")
        self._buffer = []
        path = self.folder / f"part-{len(self._parts()):05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)  # whole or not there

    def finish(self, target: Path) -> Counter[str]:
        """Stream every part into `target`, remove the parts, and count for stats.json."""
        counts: Counter[str] = Counter()
        tmp = target.with_suffix(".parquet.tmp")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            for part in self._parts():
                table = pq.read_table(part, schema=self.schema)
                writer.write_table(table)
                has_text = table["has_text"].to_numpy(zero_copy_only=False)
                has_image = table["has_image"].to_numpy(zero_copy_only=False)
                counts["items"] += table.num_rows
                counts["no_text"] += int((~has_text).sum())
                counts["with_image"] += int(has_image.sum())
                counts["no_content"] += int((~(has_text | has_image)).sum())
                errors = pc.value_counts(table["image_error"]).to_pylist()
                counts.update({f"image_{e['values']}": e["counts"] for e in errors if e["values"]})
        tmp.replace(target)
        shutil.rmtree(self.folder)
        return counts
