"""A model's heads the way it serves: one global ANN search per head, or searched cluster by
cluster (divide and conquer, mtmh/retrieval/partitioned.py).

A prompted model (dat: it has a query table, mtmh/clusters/query_table.py) always serves
partitioned, each visited cluster searched with the trigger's query for it: its prompts
mean nothing to a global search. Any other model serves globally unless asked for the
partitioned search (the report's "(DAT serving)" rows, the Serve app's divide-and-conquer
mode). The preranker learns on, the evaluation measures and Serve answers with the same heads.

Example:
    heads = served_heads(run_dir, "dat", ("engagement",), cfg.clusters)
    heads = served_heads(run_dir, "mtmh", None, cfg.clusters, partitioned=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtmh.clusters.artifact import load_clusters
from mtmh.clusters.query_table import has_queries, load_queries
from mtmh.config import ClusterConfig
from mtmh.retrieval.cluster_index import ClusterIndex
from mtmh.retrieval.heads import HeadIndex, NeighborHead, load_model_heads
from mtmh.retrieval.partitioned import PartitionedHead


def is_prompted(run_dir: Path, source: str) -> bool:
    """True for a model with a query per cluster (a prompted variant's training wrote one)."""
    return has_queries(run_dir / "models" / source)


def partition(
    run_dir: Path, source: str, heads: dict[str, HeadIndex], cc: ClusterConfig
) -> dict[str, HeadIndex]:
    """`heads` searched cluster by cluster with `cc`'s visit, strategy and temperature, over
    the run's clusters; a prompted model's heads with their query tables."""
    if any(isinstance(h, NeighborHead) for h in heads.values()):
        raise ValueError(f"{source}: a neighbour table has no vectors to partition")
    num_items = len(next(iter(heads.values())).vectors)
    clustering, _ = load_clusters(run_dir, num_items)
    prompted = is_prompted(run_dir, source)
    folder = run_dir / "models" / source
    out: dict[str, HeadIndex] = {}
    for name, head in heads.items():
        queries = load_queries(folder, name, clustering.assignments) if prompted else None
        out[name] = PartitionedHead.of(
            head,
            ClusterIndex.build(head.vectors, clustering.assignments),
            min(cc.visit, clustering.num_clusters),
            cc.strategy,
            cc.temperature,
            queries,
        )
    return out


def served_heads(
    run_dir: Path,
    source: str,
    heads: Sequence[str] | None,
    cc: ClusterConfig,
    partitioned: bool = False,
    use_gpu: bool = False,
) -> dict[str, HeadIndex]:
    """The named heads (None: all) of `source` as it serves: partitioned when asked, or
    always for a prompted model."""
    loaded = load_model_heads(run_dir, source, heads, use_gpu=use_gpu)
    if partitioned or is_prompted(run_dir, source):
        return partition(run_dir, source, loaded, cc)
    return loaded
