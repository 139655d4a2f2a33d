"""Cluster the catalog for divide and conquer: FAISS spherical k-means over one embedding.

python ray_jobs/cluster_catalog.py --run runs/ml-1m
python ray_jobs/cluster_catalog.py --run runs/ml-1m --set clusters.source=mtmh \
    --set clusters.head=relevance --set clusters.num_clusters=64

Reads the content encoder's embeddings (RUN/content, the default) or a trained variant's head
(RUN/models/<variant>/embeddings). Writes RUN/clusters/: assignments.parquet (every item
once), centroids.npy and meta.json with the embedding version it came from.
"""

from __future__ import annotations

import sys

from mtmh.clusters.build import build_clusters
from mtmh.job_args import job_parser, parse_on_run
from mtmh.job_output import JobOutput, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, run="run directory")
    args, cfg = parse_on_run(parser, argv)

    def body(out: JobOutput) -> int:
        meta = build_clusters(cfg, args.run)
        sizes = meta["sizes"]
        out.console.print(
            f"{meta['num_clusters']} clusters of {meta['source']}/{meta['head']} "
            f"({meta['model_version']}), {min(sizes)} to {max(sizes)} items each: "
            f"{args.run / 'clusters'}",
            soft_wrap=True,
        )
        return 0

    return run_job("cluster_catalog", args.run, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
