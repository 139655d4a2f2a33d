"""The content stage of a run: train (or load) the encoder, then embed the whole catalog.

    RUN/content/encoder/               the trained encoder (mtmh/content/checkpoint.py)
    RUN/content/item_embeddings.parquet  item_id, embedding [D] float32 (unit norm; the
                                        teacher F), content_features [D], has_text, has_image,
                                        image_error; one row per catalog item
    RUN/content/stats.json             counts, fallbacks, timings
    RUN/content/config.yaml            the run config that made them

Training runs as one Ray task (on a GPU when `content.use_gpu`); embedding runs as Ray Data
`map_batches` over `ItemContentEmbedder` on an autoscaling actor pool, streamed back to the
driver one batch at a time into part files (mtmh/content/parts.py) and then one parquet file,
so the driver never holds the catalog's embeddings, and a stopped encode resumes.

Example:
    stats = encode_content(load_config(overrides=["data.dataset=ml-100k"]), Path("runs/ml-100k"))
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtmh.config import ContentConfig, RunConfig, config_hash, save_config
from mtmh.content.checkpoint import LINES_FILE, load_spec, save_encoder
from mtmh.content.concepts import pooled_concepts
from mtmh.content.features import ContentFeaturizer
from mtmh.content.parts import EmbeddingParts, folder_digest
from mtmh.content.train import fit_projection, train_contrastive
from mtmh.progress import steps

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "item_embeddings.parquet"
INPUT_COLUMNS = ["item_id", "text", "image_uri"]  # what the embedder reads of each item


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("item_id", pa.int32()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("content_features", pa.list_(pa.float32(), dim)),
            ("has_text", pa.bool_()),
            ("has_image", pa.bool_()),
            ("image_error", pa.string()),
        ]
    )


def train_encoder(
    items_path: Path, cfg: ContentConfig, seed: int, out_dir: Path, threads: int | None = None
) -> dict[str, Any]:
    """Train the encoder on the catalog at `items_path` and save it under `out_dir`.

    Plain function (no Ray) so tests and notebooks can call it; the job runs it as a Ray task.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    table = pq.read_table(items_path, columns=["text", "image_uri", "concepts"])
    rng = np.random.default_rng(seed)
    device = "cuda" if cfg.use_gpu else "cpu"
    featurizer = ContentFeaturizer.load(cfg, device)
    concepts = table["concepts"].to_pylist()
    concept_emb, has_concepts, vocab = pooled_concepts(
        concepts, featurizer.text, cfg.train.min_concept_items
    )
    with_concepts = np.flatnonzero(has_concepts)
    contrastive = len(with_concepts) >= cfg.train.min_items_with_concepts
    pool = with_concepts if contrastive else np.arange(table.num_rows)
    chosen = np.sort(rng.choice(pool, min(len(pool), cfg.train.max_items), replace=False))
    texts = table["text"].take(chosen).to_pylist()
    uris = table["image_uri"].take(chosen).to_pylist()
    log.info("content encoder: featurizing %d training items on %s", len(chosen), device)
    feats = featurizer.featurize(texts, uris)
    if contrastive:
        result = train_contrastive(feats, concept_emb[chosen], cfg, seed)
    else:
        note = (
            f"only {len(with_concepts)} items have concepts shared with another item (need "
            f"{cfg.train.min_items_with_concepts}): PCA projection of the text/image embedding"
        )
        log.warning("content encoder fallback: %s", note)
        result = fit_projection(feats, cfg.dim, note)
    summary = {
        "config_hash": config_hash(cfg),
        "seed": seed,
        "kind": result.kind,
        "catalog_items": table.num_rows,
        "items_with_concepts": len(with_concepts),
        "concept_vocabulary": vocab,
        "training_items": len(chosen),
        "training_images": int(feats.image_mask.sum()),
        "history": result.history,
        "seconds": round(time.perf_counter() - started, 2),
    }
    save_encoder(out_dir, result, cfg, featurizer.text.dim, featurizer.image_dim, summary)
    featurizer.save_line_cache(out_dir / LINES_FILE)
    return summary


def _encoder_current(encoder_dir: Path, cfg: RunConfig) -> bool:
    try:
        summary = load_spec(encoder_dir).summary
    except FileNotFoundError:
        return False
    return (
        summary.get("config_hash") == config_hash(cfg.content) and summary.get("seed") == cfg.seed
    )


def _train_on_ray(items_path: Path, cfg: RunConfig, encoder_dir: Path) -> dict[str, Any]:
    import ray

    task = ray.remote(train_encoder).options(
        num_cpus=cfg.content.train.cpus, num_gpus=1 if cfg.content.use_gpu else 0
    )
    return ray.get(
        task.remote(items_path, cfg.content, cfg.seed, encoder_dir, cfg.content.train.threads)
    )


def embed_catalog(
    items_path: Path, encoder_dir: Path, cfg: ContentConfig, skip: np.ndarray | None = None
) -> Any:
    """The Ray Data pipeline: items (but `skip`) -> actor pool of ItemContentEmbedder ->
    batches (lazy)."""
    import ray

    from mtmh.content.embedder import ItemContentEmbedder

    # The driver streams the catalog's three input columns into the object store block by
    # block (it never holds more than one). Reading with Ray Data tasks instead costs ~10 s of
    # worker start-up here, and an actor pool whose CPUs add up to the cluster's would starve
    # those read tasks and wait forever.
    source = pq.ParquetFile(items_path)
    num_items = source.metadata.num_rows - (0 if skip is None else len(skip))
    # Enough blocks that every actor of the pool gets work, each still a few batches long.
    blocks = max(cfg.actors_max, min(1000, math.ceil(num_items / (4 * cfg.batch_size))))
    refs = []
    for batch in source.iter_batches(
        batch_size=max(1, math.ceil(num_items / blocks)), columns=INPUT_COLUMNS
    ):
        if skip is not None and len(skip):  # embedded before (a resumed encode)
            batch = batch.filter(pa.array(~np.isin(batch.column("item_id").to_numpy(), skip)))
        if batch.num_rows:
            refs.append(ray.put(pa.Table.from_batches([batch])))
    items = ray.data.from_arrow_refs(refs)  # type: ignore[arg-type]  # two ObjectRef stubs
    return items.map_batches(
        ItemContentEmbedder,
        fn_constructor_kwargs={
            "encoder_dir": str(encoder_dir),
            "use_gpu": cfg.use_gpu,
            "threads": cfg.actor_threads,
        },
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=cfg.actors_min, max_size=cfg.actors_max),
        num_cpus=cfg.actor_cpus,
        num_gpus=1 if cfg.use_gpu else None,
    )


def write_embeddings(
    batches: Any, path: Path, dim: int, total: int, encoder_digest: str = ""
) -> Counter[str]:
    """Stream embedding batches into `path` through resumable part files (mtmh/content/
    parts.py: a rerun with the same encoder skips what is written); returns stats counts."""
    schema = embeddings_schema(dim)
    parts = EmbeddingParts.open(path, schema, encoder_digest)
    with parts.appending() as append, steps("embedding items", total) as advance:
        advance(len(parts.done_ids()))
        for batch in batches:
            emb = np.asarray(batch["embedding"], dtype=np.float32).reshape(-1, dim)
            pretrained = np.asarray(batch["content_features"], dtype=np.float32).reshape(-1, dim)
            table = pa.Table.from_arrays(
                [
                    pa.array(batch["item_id"], pa.int32()),
                    pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim),
                    pa.FixedSizeListArray.from_arrays(pa.array(pretrained.ravel()), dim),
                    pa.array(np.asarray(batch["has_text"], dtype=bool)),
                    pa.array(np.asarray(batch["has_image"], dtype=bool)),
                    pa.array([str(e) for e in batch["image_error"]], pa.string()),
                ],
                schema=schema,
            )
            append(table)
            advance(table.num_rows)
    return parts.finish(path)


def encode_content(cfg: RunConfig, run_dir: Path, retrain: bool = False) -> dict[str, Any]:
    """Train or load the encoder for `run_dir`, embed every item, write stats; needs Ray up."""
    items_path = run_dir / "data" / "items.parquet"
    if not items_path.is_file():
        raise FileNotFoundError(f"{items_path} not found: run ray_jobs/prepare_data.py first")
    content_dir = run_dir / "content"
    encoder_dir = content_dir / "encoder"
    started = time.perf_counter()
    if retrain or not _encoder_current(encoder_dir, cfg):
        log.info("training the content encoder")
        _train_on_ray(items_path, cfg, encoder_dir)
    else:
        log.info("reusing the trained content encoder in %s", encoder_dir)
    spec = load_spec(encoder_dir)
    trained = time.perf_counter()

    total = pq.ParquetFile(items_path).metadata.num_rows
    out = content_dir / EMBEDDINGS_FILE
    digest = folder_digest(encoder_dir)
    done = EmbeddingParts.open(out, embeddings_schema(spec.dim), digest).done_ids()
    if len(done):
        log.info("resuming the embedding: %d of %d items were embedded before", len(done), total)
    batches = (
        embed_catalog(items_path, encoder_dir, cfg.content, skip=done).iter_batches(batch_size=None)
        if len(done) < total
        else []
    )
    counts = write_embeddings(batches, out, spec.dim, total, digest)
    if counts["items"] != total:
        raise RuntimeError(f"embedded {counts['items']} items but the catalog has {total}")
    embed_seconds = time.perf_counter() - trained
    stats: dict[str, Any] = {
        "dataset": cfg.data.dataset,
        "encoder": spec.kind,
        "encoder_note": spec.note,
        "dim": spec.dim,
        "text_model": spec.text_model,
        "vision_model": spec.vision.get("model_name"),
        **{k: int(v) for k, v in sorted(counts.items())},
        "training": {k: v for k, v in spec.summary.items() if k != "history"},
        "train_seconds": round(trained - started, 2),
        "embed_seconds": round(embed_seconds, 2),
        "items_per_second": round(total / embed_seconds, 1) if embed_seconds else None,
    }
    if spec.summary.get("history"):
        stats["training"]["final_epoch"] = spec.summary["history"][-1]
    save_config(cfg, content_dir / "config.yaml")
    (content_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def read_embeddings(path: Path, column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """(item_ids [N] int32, vectors [N, D] float32) of one vector column, sorted by item id."""
    table = pq.read_table(path, columns=["item_id", column]).sort_by("item_id")
    emb = table[column].combine_chunks()
    dim = emb.type.list_size
    values = emb.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table["item_id"].to_numpy(), values.reshape(-1, dim)
