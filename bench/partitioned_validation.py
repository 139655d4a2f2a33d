"""Validation recall of trained models searched the way divide and conquer serves them.

For each model, its engagement head is scored on the run's validation split (the end of T1,
the training's own measure: R@100, R@500 and their mean, ANN order, exact search) with
each trigger's `--visit` nearest clusters searched and merged by score, and with every
cluster searched. A prompted model (dat) searches each cluster with its own query per
cluster; any other model with its one embedding. So a model and the partitioned search can
be told apart on data no report row is chosen on.

    .venv/bin/python bench/partitioned_validation.py --run runs/synthetic-dat \
        --models mtmh dat itemcf
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from mtmh.clusters.artifact import load_clusters
from mtmh.clusters.query_table import has_queries, load_queries
from mtmh.config import load_config
from mtmh.embeddings import EmbeddingSource
from mtmh.holdout import ann_order_recall, load_holdout, validation_score
from mtmh.model.prompted import prompted_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["mtmh", "dat", "itemcf"])
    parser.add_argument("--visit", type=int, default=None, help="default: clusters.visit")
    parser.add_argument("--head", default="engagement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.run / "pipeline.yaml")
    split = load_holdout(args.run, cfg.holdout, cfg.eval.max_triggers)
    clustering, meta = load_clusters(args.run)
    k = clustering.num_clusters
    visit = args.visit or cfg.clusters.visit
    print(f"{args.run}: {len(split)} validation users, {k} clusters of {meta['source']}")
    print(f"{'model':>12} {'clusters':>9} {'R@100':>7} {'R@500':>7} {'score':>7}")
    for model in args.models:
        _, vectors = EmbeddingSource.named(args.run, model).load(args.head)
        emb = torch.tensor(vectors)  # a copy: the parquet buffer is read-only
        folder = args.run / "models" / model
        if has_queries(folder):
            queries = torch.as_tensor(load_queries(folder, args.head, clustering.assignments))
        else:
            queries = emb.unsqueeze(1).expand(-1, k, -1)  # one query for every cluster
        for v in dict.fromkeys((visit, k)):
            scores = prompted_scores(queries, emb, clustering.assignments, v)
            r = ann_order_recall(scores, split, keep=cfg.eval.keep_per_head, top_k=cfg.eval.top_k)
            print(
                f"{model:>12} {v:>9} {100 * r[100]:7.2f} {100 * r[500]:7.2f} "
                f"{validation_score(r):7.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
