"""Frozen backbone features of items: text and image embeddings with their masks.

Both the encoder's training and the catalog-embedding job read items through this one class,
so that training and serving see identical inputs. An empty text or a missing image is not an
error: its mask is 0 and its vector is zero, and the fusion MLP learns from the masks what is
present (the fallback the issue asks for).

A text of several lines is read line by line: each non-empty line is embedded on its own and
the item's text vector is the mean of its lines' vectors. A catalog's text is often a title
followed by facts (cast, director, subjects); one 128-token window over all of it truncates the
facts and blurs each into the rest, while a line each keeps every fact whole and equally
weighted. A one-line text is embedded exactly as before.

Example:
    featurizer = ContentFeaturizer.load(content_cfg)
    feats = featurizer.featurize(["sourdough bread", ""], [None, "file:///img/1.jpg"])
    feats.text_emb.shape  # [2, 384]; feats.text_mask == [1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtmh.config import ContentConfig
from mtmh.content.text_tower import TextTower
from mtmh.content.vision_tower import VisionTower


@dataclass
class ItemFeatures:
    """Backbone features of B items."""

    text_emb: np.ndarray  # [B, Ht] float32, zero where text_mask is 0
    text_mask: np.ndarray  # [B] float32, 1 when the item has non-empty text
    image_emb: np.ndarray  # [B, Hi] float32 (Hi = 0 without a vision tower)
    image_mask: np.ndarray  # [B] float32, 1 when the item's image loaded
    image_errors: list[str | None]  # per item: why its image was not used, or None

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.from_numpy(a).to(device)
            for a in (self.text_emb, self.text_mask, self.image_emb, self.image_mask)
        )


class ContentFeaturizer:
    """The frozen text tower, plus the vision tower when one is configured."""

    # Lines kept between calls: an embedding actor sees the same facts ("in language
    # m.02h40lc") in every batch. 100k lines of a 384-d tower are about 150 MB.
    LINE_CACHE_SIZE = 100_000

    def __init__(self, text: TextTower, vision: VisionTower | None) -> None:
        self.text = text
        self.vision = vision
        self._lines: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, cfg: ContentConfig, device: str = "cpu") -> ContentFeaturizer:
        text = TextTower.load(cfg.text.model, cfg.text.max_length, device)
        vision, v = None, cfg.vision
        if v.model_name is not None:
            vision = VisionTower.load(
                v.model_name, v.checkpoint, v.model_config, v.random_init, device
            )
        return cls(text, vision)

    @property
    def image_dim(self) -> int:
        return self.vision.dim if self.vision is not None else 0

    def embed_texts(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """([N, Ht] mean of each text's line embeddings, [N] bool has non-empty text)."""
        lines = [[x.strip() for x in (t or "").splitlines() if x.strip()] for t in texts]
        has_text = np.array([bool(ls) for ls in lines], dtype=bool)
        text_emb = np.zeros((len(lines), self.text.dim), np.float32)
        flat = [x for ls in lines for x in ls]
        if flat:
            # Facts repeat across items ("language English"): embed each distinct line once.
            distinct, where = np.unique(np.array(flat, dtype=object), return_inverse=True)
            emb = self._line_embeddings(distinct.tolist())[where]
            owner = np.repeat(np.arange(len(lines)), [len(ls) for ls in lines])
            np.add.at(text_emb, owner, emb)
            text_emb[has_text] /= np.array([len(ls) for ls in lines if ls], np.float32)[:, None]
        return text_emb, has_text

    def save_line_cache(self, path: Path) -> int:
        """Write the cached line embeddings to `path` (parquet: line, embedding); returns how
        many. The encoder's training embeds most of the catalog's lines; the embedding actors
        load them (`load_line_cache`) instead of running the text tower over them again, and
        a line then has the same vector in every actor, however the items are batched."""
        lines = list(self._lines)
        emb = np.stack([self._lines[x] for x in lines]) if lines else np.zeros((0, self.text.dim))
        table = pa.table(
            {
                "line": pa.array(lines, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.astype(np.float32).ravel()), self.text.dim
                ),
            }
        )
        pq.write_table(table, path)
        return len(lines)

    def load_line_cache(self, path: Path) -> int:
        """Add the line embeddings saved at `path` to the cache (at most LINE_CACHE_SIZE);
        returns how many."""
        table = pq.read_table(path)
        if table["embedding"].type.list_size != self.text.dim:
            raise ValueError(
                f"{path}: line embeddings of {table['embedding'].type.list_size} dimensions, "
                f"but the text tower gives {self.text.dim}"
            )
        table = table.slice(0, self.LINE_CACHE_SIZE)
        emb = table["embedding"].combine_chunks().values.to_numpy().reshape(-1, self.text.dim)
        self._lines.update(zip(table["line"].to_pylist(), emb, strict=True))
        return table.num_rows

    def _line_embeddings(self, lines: list[str]) -> np.ndarray:
        """[L, Ht] embeddings of distinct lines, from the cache where it has them."""
        new = [x for x in lines if x not in self._lines]
        if new:
            if len(self._lines) + len(new) > self.LINE_CACHE_SIZE:
                self._lines.clear()  # a catalog this varied gains little from a cache
            self._lines.update(zip(new, self.text.encode(new), strict=True))
        return np.stack([self._lines[x] for x in lines])

    def featurize(
        self, texts: Sequence[str | None], image_uris: Sequence[str | None] | None = None
    ) -> ItemFeatures:
        n = len(texts)
        text_emb, has_text = self.embed_texts(texts)

        image_emb = np.zeros((n, self.image_dim), np.float32)
        image_ok = np.zeros(n, bool)
        uris = list(image_uris) if image_uris is not None else [None] * n
        if self.vision is None:
            # Images exist but nothing can read them: say so per item instead of hiding it.
            errors: list[str | None] = ["no_vision_tower" if u else None for u in uris]
        else:
            pixels, image_ok, errors = self.vision.load_images(uris)
            if image_ok.any():
                image_emb[image_ok] = self.vision.encode(pixels).cpu().numpy()
        return ItemFeatures(
            text_emb, has_text.astype(np.float32), image_emb, image_ok.astype(np.float32), errors
        )
