"""The content encoder: towers against their references, fallbacks, training, the Ray job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from mtmh.config import ContentConfig, ContentTrainConfig, VisionTowerConfig, build_config
from mtmh.content.embedder import ItemContentEmbedder
from mtmh.content.encode import encode_content, read_embeddings, train_encoder
from mtmh.content.features import ContentFeaturizer, ItemFeatures
from mtmh.content.text_tower import TextTower, default_text_model
from mtmh.content.towers import ContentTower
from mtmh.content.train import fit_projection, symmetric_info_nce, train_contrastive
from mtmh.data.prepare import prepare
from tests.tiny_data import T0, TEXTS, write_tiny_dataset, write_tiny_images

DAY = 86_400

# A tiny open_clip architecture, random weights: only to exercise the vision code path.
TINY_VIT = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 8, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def text_tower() -> TextTower:
    return TextTower.load(None)


@pytest.fixture
def tiny_vit(tmp_path: Path) -> VisionTowerConfig:
    path = tmp_path / "mtmh-tiny-vit.json"
    path.write_text(json.dumps(TINY_VIT))
    return VisionTowerConfig(model_name="mtmh-tiny-vit", model_config=str(path), random_init=True)


def test_text_tower_matches_a_direct_transformers_forward(text_tower: TextTower) -> None:
    from transformers import AutoModel, AutoTokenizer

    texts = ["sourdough bread with a crisp crust", "offside", "a much longer " * 20 + "text"]
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())
    model = AutoModel.from_pretrained(default_text_model()).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    expected = []
    for i in range(len(texts)):  # mean over each text's real tokens, one text at a time
        real = hidden[i][batch["attention_mask"][i].bool()]
        expected.append(F.normalize(real.mean(dim=0), dim=0).numpy())
    got = text_tower.encode(texts, batch_size=2)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def test_vision_path_runs_end_to_end_with_fallbacks(
    tmp_path: Path, text_tower: TextTower, tiny_vit: VisionTowerConfig
) -> None:
    uris = write_tiny_images(tmp_path / "img")  # a, b good; c corrupt; d missing; e none
    featurizer = ContentFeaturizer.load(ContentConfig(vision=tiny_vit))
    feats = featurizer.featurize(TEXTS, uris)
    assert feats.image_mask.tolist() == [1, 1, 0, 0, 0]
    assert feats.image_errors == [None, None, "unreadable", "missing", None]
    assert feats.text_mask.tolist() == [1, 1, 1, 1, 0]  # "e" has empty text
    assert not feats.text_emb[4].any() and not feats.image_emb[2:].any()

    tower = ContentTower(text_tower.dim, featurizer.image_dim, dim=16).eval()
    emb = tower(*feats.tensors())
    assert emb.shape == (5, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
    # The image changes the embedding; without it the item falls back to its text alone.
    text_only = tower(*feats.tensors()[:2], torch.zeros_like(feats.tensors()[2]), torch.zeros(5))
    assert not torch.allclose(emb[0], text_only[0])
    torch.testing.assert_close(emb[2:], text_only[2:])


def test_images_without_a_vision_tower_are_reported(text_tower: TextTower) -> None:
    feats = ContentFeaturizer(text_tower, None).featurize(["x", "y"], ["/some/img.png", None])
    assert feats.image_errors == ["no_vision_tower", None]
    assert feats.image_emb.shape == (2, 0) and feats.image_mask.tolist() == [0, 0]


def test_a_multi_line_text_is_the_mean_of_its_lines(text_tower: TextTower) -> None:
    featurizer = ContentFeaturizer(text_tower, None)
    texts = ["Toy Story (1995)\nstarring m.013tjc\n\n  in language m.02h40lc ", "", None, "one"]
    feats = featurizer.featurize(texts)
    lines = ["Toy Story (1995)", "starring m.013tjc", "in language m.02h40lc"]
    np.testing.assert_allclose(
        feats.text_emb[0], text_tower.encode(lines).mean(axis=0), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(feats.text_emb[3], text_tower.encode(["one"])[0], atol=1e-5)
    assert feats.text_mask.tolist() == [1.0, 0.0, 0.0, 1.0] and not feats.text_emb[1:3].any()
    # A second call is served from the line cache and gives the same vectors.
    again = featurizer.featurize(texts)
    np.testing.assert_array_equal(again.text_emb, feats.text_emb)


def test_symmetric_info_nce_matches_a_naive_loop() -> None:
    torch.manual_seed(0)
    a = F.normalize(torch.randn(6, 4), dim=1)
    b = F.normalize(torch.randn(6, 4), dim=1)
    tau = 0.2
    naive = 0.0
    for i in range(6):
        row = torch.tensor([float(a[i] @ b[j]) / tau for j in range(6)])
        col = torch.tensor([float(a[j] @ b[i]) / tau for j in range(6)])
        naive += -(row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0))
    torch.testing.assert_close(symmetric_info_nce(a, b, tau), naive / 12)


def _toy_features(n: int, seed: int = 0) -> tuple[ItemFeatures, np.ndarray]:
    """Text features in 8 clusters and concepts that follow the same clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, 32)).astype(np.float32)
    cluster = rng.integers(0, 8, size=n)
    text = centers[cluster] + 0.3 * rng.normal(size=(n, 32)).astype(np.float32)
    concept = centers[cluster] @ rng.normal(size=(32, 24)).astype(np.float32)
    feats = ItemFeatures(
        text,
        np.ones(n, np.float32),
        np.zeros((n, 0), np.float32),
        np.zeros(n, np.float32),
        [None] * n,
    )
    return feats, concept.astype(np.float32)


def test_contrastive_training_lowers_its_loss() -> None:
    feats, concepts = _toy_features(128)
    cfg = ContentConfig(
        dim=16, train=ContentTrainConfig(epochs=30, batch_size=32, hidden_dim=32, val_fraction=0.0)
    )
    result = train_contrastive(feats, concepts, cfg, seed=0)
    losses = [row["train_loss"] for row in result.history]
    assert result.kind == "contrastive" and len(losses) == 30
    assert losses[-1] < 0.7 * losses[0]


def test_projection_fallback_is_a_pca_of_the_fusion_input() -> None:
    feats, _ = _toy_features(64)
    result = fit_projection(feats, dim=4, note="no concepts")
    weight = result.content.proj.weight.detach()
    torch.testing.assert_close(weight @ weight.T, torch.eye(4), atol=1e-4, rtol=0)
    emb = result.content(*feats.tensors())
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(64))
    assert result.concept is None and result.kind == "projection"


def test_train_encoder_falls_back_without_concepts(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "text": ["sourdough bread", "croissant", "offside", "striker", ""],
                "image_uri": pa.nulls(5, pa.string()),
                "concepts": pa.array([[], [], ["#only-once"], [], []], pa.list_(pa.string())),
            }
        ),
        tmp_path / "items.parquet",
    )
    cfg = ContentConfig(train=ContentTrainConfig(min_items_with_concepts=2))
    summary = train_encoder(tmp_path / "items.parquet", cfg, seed=0, out_dir=tmp_path / "enc")
    assert summary["kind"] == "projection" and summary["items_with_concepts"] == 0
    spec = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert "PCA" in spec["note"] and not (tmp_path / "enc" / "concept_tower.pt").exists()


def test_the_embedding_actors_reuse_the_lines_training_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["sourdough bread\nbaked in m.01", "croissant\nbaked in m.01", "offside", ""]
    pq.write_table(
        pa.table(
            {
                "text": texts,
                "image_uri": pa.nulls(4, pa.string()),
                "concepts": pa.array([[], [], [], []], pa.list_(pa.string())),
            }
        ),
        tmp_path / "items.parquet",
    )
    cfg = ContentConfig(train=ContentTrainConfig(min_items_with_concepts=2))
    train_encoder(tmp_path / "items.parquet", cfg, seed=0, out_dir=tmp_path / "enc")
    saved = pq.read_table(tmp_path / "enc" / "text_lines.parquet")
    assert sorted(saved["line"].to_pylist()) == sorted(
        ["sourdough bread", "croissant", "baked in m.01", "offside"]
    )

    embedder = ItemContentEmbedder(tmp_path / "enc")
    text = embedder.featurizer.text
    expected = embedder.featurizer.embed_texts(texts)[0]  # from the saved lines

    def no_tower(_: object) -> np.ndarray:
        raise AssertionError("the text tower ran on a line training had embedded")

    monkeypatch.setattr(text, "encode", no_tower)
    out = embedder({"item_id": np.arange(4), "text": np.array(texts, dtype=object)})
    assert out["has_text"].tolist() == [True, True, True, False]
    # The saved vectors are the tower's own (to float precision: another batch, other padding).
    monkeypatch.undo()
    np.testing.assert_allclose(
        expected[:3], ContentFeaturizer(text, None).embed_texts(texts)[0][:3], atol=1e-5
    )


@pytest.mark.usefixtures("ray_local")
def test_encode_job_on_tiny_data_through_ray(tmp_path: Path, tiny_vit: VisionTowerConfig) -> None:
    root = write_tiny_dataset(tmp_path / "src", with_bad_rows=False, with_images=True)
    cfg = build_config(
        overrides=[
            f"data.dataset=parquet:{root}",
            f"data.data_dir={tmp_path / 'cache'}",
            "data.split.mode=timestamp",
            f"data.split.cut_timestamp={T0 + 5 * DAY}",
            f"content.vision.model_name={tiny_vit.model_name}",
            f"content.vision.model_config={tiny_vit.model_config}",
            "content.vision.random_init=true",
            "content.train.min_items_with_concepts=2",
            "content.train.epochs=3",
            "content.batch_size=2",
            "content.actors_max=2",
            "content.actor_cpus=0.5",
        ]
    )
    run = tmp_path / "run"
    prepare(cfg, run)
    stats = encode_content(cfg, run)

    ids, emb = read_embeddings(run / "content" / "item_embeddings.parquet")
    assert ids.tolist() == [0, 1, 2, 3, 4] and emb.shape == (5, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert stats["encoder"] == "contrastive" and stats["training"]["items_with_concepts"] == 4
    assert (stats["with_image"], stats["image_unreadable"], stats["image_missing"]) == (2, 1, 1)
    assert stats["no_text"] == 1 and stats["no_content"] == 1
    table = pq.read_table(run / "content" / "item_embeddings.parquet").sort_by("item_id")
    assert table["image_error"].to_pylist() == ["", "", "unreadable", "missing", ""]
    _, pretrained = read_embeddings(run / "content" / "item_embeddings.parquet", "content_features")
    np.testing.assert_allclose(np.linalg.norm(pretrained, axis=1), 1.0, atol=1e-5)

    # A second run with the same config reuses the trained encoder and gives the same vectors.
    encoder_mtime = (run / "content" / "encoder" / "content_tower.pt").stat().st_mtime
    encode_content(cfg, run)
    assert (run / "content" / "encoder" / "content_tower.pt").stat().st_mtime == encoder_mtime
    np.testing.assert_allclose(read_embeddings(run / "content" / "item_embeddings.parquet")[1], emb)
