"""Vision tower: an open_clip image encoder, by architecture name and a local checkpoint.

The paper uses ViT-H-14; any open_clip architecture works. Weights come from a local
checkpoint file (nothing is downloaded). `random_init` builds the architecture with random
weights and exists only so tests can exercise the code path with a tiny custom config.

Images load from `image_uri` (a local path or a file:// URL) through PIL and open_clip's own
preprocessing. An image that is missing, unreadable or behind an unsupported URI is not an
error: `load_images` reports why, and the content encoder falls back to the item's text.

Example:
    tower = VisionTower.load("ViT-H-14", checkpoint="/models/vit_h14.bin")
    pixels, ok, errors = tower.load_images(["file:///data/a.jpg", None])
    emb = tower.encode(pixels)  # [n_ok, 1024] unit norm, rows of the images that loaded
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import torch
import torch.nn.functional as F

# Why an item's image was not used; the encode job counts these.
IMAGE_ERRORS = ("missing", "unreadable", "unsupported_uri")


def image_path(uri: str) -> Path | None:
    """A local path for `uri` (plain path or file:// URL); None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)  # plain path (a one-letter "scheme" is a Windows drive)
    return None


class VisionTower:
    """A frozen open_clip visual encoder plus its preprocessing transform."""

    def __init__(
        self, visual: torch.nn.Module, preprocess: Callable[[object], torch.Tensor], dim: int
    ) -> None:
        self.visual = visual.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.dim = dim

    @classmethod
    def load(
        cls,
        model_name: str,
        checkpoint: str | None = None,
        model_config: str | None = None,
        random_init: bool = False,
        device: str = "cpu",
    ) -> VisionTower:
        """Build `model_name` (an open_clip architecture; `model_config` registers a custom
        JSON config first) and load `checkpoint`."""
        import open_clip

        if model_config is not None:
            open_clip.add_model_config(model_config)
        if checkpoint is None and not random_init:
            raise ValueError(
                f"vision tower {model_name!r} needs content.vision.checkpoint (a local weights "
                "file); random weights are for tests only (content.vision.random_init=true)"
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"vision checkpoint not found: {checkpoint}")
        # Random weights are seeded: every actor and every later load must build the same
        # tower, or one catalog would be embedded by different encoders.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=checkpoint, device=device
            )
        dim = int(open_clip.get_model_config(model_name)["embed_dim"])
        return cls(model.visual, preprocess, dim)

    @property
    def device(self) -> torch.device:
        return next(self.visual.parameters()).device

    def load_images(
        self, uris: Sequence[str | None]
    ) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
        """Load and preprocess images.

        Returns pixels [n_ok, 3, S, S] for the images that loaded, a bool mask [B] of which
        did, and per item the reason it did not (one of IMAGE_ERRORS) or None.
        """
        from PIL import Image, UnidentifiedImageError

        pixels, ok, errors = [], np.zeros(len(uris), bool), []
        for i, uri in enumerate(uris):
            error: str | None = None
            if uri:
                path = image_path(uri)
                if path is None:
                    error = "unsupported_uri"
                elif not path.is_file():
                    error = "missing"
                else:
                    try:
                        with Image.open(path) as img:
                            pixels.append(self.preprocess(img.convert("RGB")))
                        ok[i] = True
                    except (UnidentifiedImageError, OSError, ValueError):
                        error = "unreadable"
            errors.append(error)
        stacked = torch.stack(pixels) if pixels else torch.zeros(0, 3, 1, 1)
        return stacked, ok, errors

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] preprocessed pixels -> [B, D] unit-norm image embeddings."""
        if len(pixels) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        return F.normalize(self.visual(pixels.to(self.device)).float(), dim=-1)
