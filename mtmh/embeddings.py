"""Where item embeddings live, per model and head, and the version that names them.

A trained variant writes RUN/models/<variant>/embeddings/<head>.parquet; the content encoder
writes RUN/content/item_embeddings.parquet (one head, `content`). Indexes, the evaluation and
the Serve app all read embeddings through `EmbeddingSource`, so the model version they record
is the same everywhere: a hash of the embedding files' bytes (content-addressed, so a retrained
model with different vectors is a different version, and an untouched one keeps its version).

Example:
    src = EmbeddingSource.trained(Path("runs/ml-100k"), "mtmh")
    ids, vectors = src.load("relevance")
    src.version  # "mtmh-3f2a9c0d1b7e"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mtmh.content.encode import EMBEDDINGS_FILE, read_embeddings

CONTENT_SOURCE = "content"  # the content encoder's name as an embedding source


@dataclass(frozen=True)
class EmbeddingSource:
    name: str  # "mtmh", "itemcf", ..., or "content"
    heads: dict[str, Path] = field(hash=False)  # head -> parquet with item_id, embedding

    @classmethod
    def trained(cls, run_dir: Path, variant: str) -> EmbeddingSource:
        folder = run_dir / "models" / variant / "embeddings"
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{folder}: no embeddings; train {variant!r} first")
        return cls(variant, {f.stem: f for f in files})

    @classmethod
    def content(cls, run_dir: Path) -> EmbeddingSource:
        path = run_dir / "content" / EMBEDDINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run ray_jobs/encode_content.py first")
        return cls(CONTENT_SOURCE, {CONTENT_SOURCE: path})

    @classmethod
    def named(cls, run_dir: Path, name: str) -> EmbeddingSource:
        return cls.content(run_dir) if name == CONTENT_SOURCE else cls.trained(run_dir, name)

    def load(self, head: str) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids [N] int32, vectors [N, D] float32) of one head, sorted by item id."""
        if head not in self.heads:
            raise KeyError(f"model {self.name!r} has no head {head!r}; it has {sorted(self.heads)}")
        return read_embeddings(self.heads[head], "embedding")

    @cached_property
    def version(self) -> str:
        digest = hashlib.sha256()
        for head in sorted(self.heads):
            digest.update(head.encode())
            with self.heads[head].open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return f"{self.name}-{digest.hexdigest()[:12]}"
