"""The callable class that Ray Data's actor pool runs to embed items with a trained encoder.

Each actor loads the backbones and the content tower once (`__init__`), then maps batches of
items (`item_id`, `text`, `image_uri`) to their teacher embeddings. The same class runs in a
plain loop for the benchmark's in-process reference, so both time identical work.

Output columns per item:
    item_id      as given
    embedding    [D] float32, unit norm: the teacher F
    content_features  [D] float32, unit norm: the PCA-reduced backbone features before concept
                 training (what a MoL-style baseline may read as input)
    has_text     the item had non-empty text
    has_image    its image loaded and was used
    image_error  why an image_uri was not used ("missing", "unreadable", "unsupported_uri",
                 "no_vision_tower"), or "" when there was none or it loaded
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtmh.config import ContentConfig
from mtmh.content.checkpoint import LINES_FILE, load_content_tower
from mtmh.content.features import ContentFeaturizer
from mtmh.errors import NoDeviceError


class ItemContentEmbedder:
    def __init__(
        self, encoder_dir: str | Path, use_gpu: bool = False, threads: int | None = None
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        device = "cuda" if use_gpu else "cpu"
        if use_gpu and not torch.cuda.is_available():
            raise NoDeviceError("content.use_gpu is set but this worker has no CUDA device")
        self.spec, self.tower = load_content_tower(Path(encoder_dir), device)
        cfg = self.spec.content_config(ContentConfig())
        self.featurizer = ContentFeaturizer.load(cfg, device)
        lines = Path(encoder_dir) / LINES_FILE
        if lines.is_file():  # an encoder trained before the file existed has none
            self.featurizer.load_line_cache(lines)
        self.device = device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [t if isinstance(t, str) else None for t in batch["text"]]
        uris = batch.get("image_uri")
        image_uris = [u if isinstance(u, str) else None for u in uris] if uris is not None else None
        feats = self.featurizer.featurize(texts, image_uris)
        inputs = feats.tensors(self.device)
        with torch.inference_mode():
            emb = self.tower(*inputs).float().cpu().numpy()
            pretrained = self.tower.pretrained_features(*inputs).float().cpu().numpy()
        return {
            "item_id": np.asarray(batch["item_id"], dtype=np.int32),
            "embedding": emb.astype(np.float32),
            "content_features": pretrained.astype(np.float32),
            "has_text": feats.text_mask > 0,
            "has_image": feats.image_mask > 0,
            "image_error": np.array([e or "" for e in feats.image_errors], dtype=object),
        }
