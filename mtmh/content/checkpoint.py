"""Saving and loading a trained content encoder.

Layout of an encoder directory (`RUN/content/encoder/`):
    encoder.json      EncoderSpec: backbones, dims, the kind of fusion, training summary
    content_tower.pt  state dict of the ContentTower (the teacher)
    concept_tower.pt  state dict of the ConceptTower (absent for the projection fallback)
    text_lines.parquet  the text tower's embeddings of the lines training read (line,
                      embedding), which the embedding actors reuse (features.py)

The backbones are not copied: the spec names them (model path or id, open_clip name and
checkpoint), so loading needs the same local weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtmh.config import ContentConfig, VisionTowerConfig
from mtmh.content.text_tower import default_text_model
from mtmh.content.towers import ContentTower, FusionKind
from mtmh.content.train import TrainingResult

SPEC_FILE = "encoder.json"
LINES_FILE = "text_lines.parquet"


@dataclass(frozen=True)
class EncoderSpec:
    text_model: str  # resolved path or hub id of the text backbone
    text_max_length: int
    text_dim: int
    image_dim: int  # 0 without a vision tower
    vision: dict[str, Any]  # VisionTowerConfig as a dict
    dim: int
    hidden_dim: int
    fusion: FusionKind
    kind: str  # "contrastive" or "projection"
    note: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def content_config(self, base: ContentConfig) -> ContentConfig:
        """`base` with the backbones this encoder was trained on."""
        import dataclasses

        text = dataclasses.replace(
            base.text, model=self.text_model, max_length=self.text_max_length
        )
        return dataclasses.replace(base, text=text, vision=VisionTowerConfig(**self.vision))


def save_encoder(
    out_dir: Path,
    result: TrainingResult,
    cfg: ContentConfig,
    text_dim: int,
    image_dim: int,
    summary: dict[str, Any],
) -> EncoderSpec:
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = EncoderSpec(
        text_model=cfg.text.model or default_text_model(),
        text_max_length=cfg.text.max_length,
        text_dim=text_dim,
        image_dim=image_dim,
        vision=asdict(cfg.vision),
        dim=cfg.dim,
        hidden_dim=cfg.train.hidden_dim,
        fusion=result.content.kind,
        kind=result.kind,
        note=result.note,
        summary=summary,
    )
    torch.save(result.content.state_dict(), out_dir / "content_tower.pt")
    if result.concept is not None:
        torch.save(result.concept.state_dict(), out_dir / "concept_tower.pt")
    (out_dir / SPEC_FILE).write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return spec


def load_spec(encoder_dir: Path) -> EncoderSpec:
    path = Path(encoder_dir) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained content encoder at {encoder_dir} ({SPEC_FILE} missing)"
        )
    return EncoderSpec(**json.loads(path.read_text()))


def load_content_tower(encoder_dir: Path, device: str = "cpu") -> tuple[EncoderSpec, ContentTower]:
    spec = load_spec(encoder_dir)
    tower = ContentTower(spec.text_dim, spec.image_dim, spec.dim, spec.hidden_dim, kind=spec.fusion)
    state = torch.load(
        Path(encoder_dir) / "content_tower.pt", map_location=device, weights_only=True
    )
    tower.load_state_dict(state)
    return spec, tower.to(device).eval()
