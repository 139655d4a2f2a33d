"""Build the catalog's clusters from the configured embedding (`clusters.source`/`head`).

Example:
    meta = build_clusters(cfg, Path("runs/ml-1m"))  # writes RUN/clusters/
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mtmh.clusters.artifact import save_clusters
from mtmh.clusters.kmeans import spherical_kmeans
from mtmh.config import ConfigError, RunConfig
from mtmh.embeddings import EmbeddingSource
from mtmh.errors import ArtifactError

log = logging.getLogger(__name__)


def source_head(source: EmbeddingSource, head: str | None) -> str:
    """The configured head, or the source's only head, or its engagement head."""
    if head is not None:
        if head not in source.heads:
            raise ConfigError(
                f"clusters.head={head!r}: {source.name!r} has heads {sorted(source.heads)}"
            )
        return head
    if len(source.heads) == 1:
        return next(iter(source.heads))
    if "engagement" in source.heads:
        return "engagement"
    raise ConfigError(f"clusters.head: choose one of {sorted(source.heads)} of {source.name!r}")


def build_clusters(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    cc = cfg.clusters
    started = time.perf_counter()
    source = EmbeddingSource.named(run_dir, cc.source)
    head = source_head(source, cc.head)
    ids, vectors = source.load(head)
    if len(ids) < 2:
        raise ArtifactError(f"{source.name}/{head}: {len(ids)} item(s), nothing to cluster")
    k = min(cc.num_clusters, len(ids))
    clustering = spherical_kmeans(vectors, k, cfg.seed, cc.iterations, cc.restarts)
    meta = {
        "source": cc.source,
        "head": head,
        "model_version": source.version,
        "requested_clusters": cc.num_clusters,
        "seed": cfg.seed,
        "iterations": cc.iterations,
        "restarts": cc.restarts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    save_clusters(run_dir, clustering, meta)
    sizes = clustering.sizes()
    log.info(
        "clusters: %d of %s/%s, sizes %d..%d (median %d)",
        clustering.num_clusters,
        cc.source,
        head,
        sizes.min(),
        sizes.max(),
        int(sorted(sizes)[len(sizes) // 2]),
    )
    return {**meta, "num_clusters": clustering.num_clusters, "sizes": sizes.tolist()}
