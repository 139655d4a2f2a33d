"""Per-cluster search, two layouts side by side: one IVF-flat index whose lists are the
clusters ("lists") against one flat index per cluster ("indexes") (mtmh/retrieval/cluster_index.py).

Both hold the same vectors and return the same neighbours (checked here on every call); what
differs is the time a user's partitioned search takes (`PartitionedHead.candidates`: every
trigger's visited clusters, K_ann candidates shared by the strategy's quotas), the build time
and the bytes held. The searches alternate layouts call by call, so machine noise falls on
both alike; the table gives medians and the ratio lists / indexes.

    .venv/bin/python bench/cluster_layout.py --run runs/synthetic-dat
    .venv/bin/python bench/cluster_layout.py --run runs/ml-1m-dat --model mtmh --head relevance
    .venv/bin/python bench/cluster_layout.py --items 200000 --clusters 64   # random, clustered
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss
import numpy as np

from mtmh.clusters.artifact import load_clusters
from mtmh.clusters.kmeans import spherical_kmeans
from mtmh.config import load_config
from mtmh.index.faiss_index import build_exact
from mtmh.retrieval.cluster_index import CLUSTER_LAYOUTS, ClusterIndex
from mtmh.retrieval.heads import HeadIndex, load_heads
from mtmh.retrieval.partitioned import PartitionedHead
from mtmh.retrieval.ranking import blocked_items


def index_bytes(part: ClusterIndex) -> int:
    indexes = [part.index] if part.layout == "lists" else part.index
    return sum(len(faiss.serialize_index(ix)) for ix in indexes)


def random_head(items: int, clusters: int, dim: int = 64) -> tuple[HeadIndex, np.ndarray]:
    """A catalog of `items` unit vectors around `clusters` centres, and its k-means."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, items)] + 0.8 * rng.normal(size=(items, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assignments = spherical_kmeans(x, clusters, seed=0).assignments
    return HeadIndex("random", "engagement", "v", x, build_exact(x, np.arange(items))), assignments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run's head and clusters")
    source.add_argument("--items", type=int, help="or a random clustered catalog this large")
    parser.add_argument("--clusters", type=int, default=64, help="with --items")
    parser.add_argument("--model", default="mtmh")
    parser.add_argument("--head", default="engagement")
    parser.add_argument("--users", type=int, default=200, help="searches timed per setting")
    parser.add_argument("--triggers", type=int, default=50, help="triggers per user")
    parser.add_argument("--seen", type=int, default=100, help="seen items left out per user")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    if args.run is not None:
        cfg = load_config(args.run / "pipeline.yaml")
        (head,) = load_heads(args.run, args.model, (args.head,)).values()
        assignments = load_clusters(args.run, len(head.vectors))[0].assignments
    else:
        cfg = load_config(None)
        head, assignments = random_head(args.items, args.clusters)
    n, num_clusters = len(head.vectors), int(assignments.max()) + 1
    k_ann, keep = cfg.eval.k_ann_for(n), cfg.eval.keep_per_head
    parts, built = {}, {}
    for layout in CLUSTER_LAYOUTS:
        start = time.perf_counter()
        parts[layout] = ClusterIndex.build(head.vectors, assignments, layout)
        built[layout] = time.perf_counter() - start
    print(
        f"{args.run or 'random'} {head.model}/{head.head}: {n} items, {num_clusters} clusters, "
        f"K_ann {k_ann}, K {keep}, {args.users} users x {args.triggers} triggers"
    )
    for layout, part in parts.items():
        print(f"  {layout:>8}: built in {built[layout]:.3f} s, {index_bytes(part) / 2**20:.1f} MiB")
    rng = np.random.default_rng(0)
    users = [
        (rng.choice(n, args.triggers, replace=False), rng.choice(n, args.seen, replace=False))
        for _ in range(args.users)
    ]
    visits = sorted({min(v, num_clusters) for v in (2, cfg.clusters.visit, 32)})
    print(f"{'strategy':>9} {'visit':>5} {'lists ms':>9} {'indexes ms':>11} {'ratio':>6}")
    for strategy in ("affinity", "uniform"):
        for visit in visits:
            heads = {
                layout: PartitionedHead.of(head, part, visit, strategy)
                for layout, part in parts.items()
            }
            times: dict[str, list[float]] = {layout: [] for layout in heads}
            for triggers, seen in users:
                blocked = blocked_items(n, seen)
                found = {}
                for layout, ph in heads.items():
                    start = time.perf_counter()
                    found[layout] = ph.candidates(triggers, k_ann, keep, blocked)
                    times[layout].append(time.perf_counter() - start)
                if not np.array_equal(found["lists"].ids, found["indexes"].ids):
                    raise AssertionError(f"the layouts disagree at {strategy}@{visit}")
            ms = {layout: 1000 * statistics.median(t) for layout, t in times.items()}
            print(
                f"{strategy:>9} {visit:>5} {ms['lists']:9.2f} {ms['indexes']:11.2f} "
                f"{ms['lists'] / ms['indexes']:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
