"""Benchmark: the three ANN index families, each autotuned, against exact search, side by side.

The vectors are N synthetic unit vectors in D dimensions drawn around `--clusters` random
centres (Gaussian noise `--noise` around each centre, then normalised): retrieval embeddings
have cluster structure, and an index's speed-up depends on how much (noise 1.0 is tight,
1.5 loose, 2.0 close to structureless). The queries are other draws from the same
distribution, not indexed points.

Each family in `--families` is built with the platform's own code (`build_index`) and tuned
with the platform's autotune step (`autotune`, the one the pipeline runs at build time) on
the same queries and the same exact top-k. The table shows every setting autotune tried,
with recall@k, QPS, and the ratio to exact QPS measured in the same run; the summary gives
each family's best point that reaches `--target-recall`, and its build time.

    python bench/index_bench.py                                 # 1M x 128, noise 1.5, k=100
    python bench/index_bench.py --noise 1.0 --families ivf_flat
    python bench/index_bench.py --n 200000 --out runs/index_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np
from rich.console import Console
from rich.table import Table

from mtmh.config import IndexConfig
from mtmh.index.autotune import autotune
from mtmh.index.faiss_index import build_index, factory_key


def clustered(n: int, dim: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):  # in blocks: bounded temporaries
        hi = min(n, lo + 100_000)
        x = centres[rng.integers(0, clusters, hi - lo)]
        x = x + noise * rng.normal(size=x.shape).astype(np.float32) / np.sqrt(dim)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--clusters", type=int, default=2_000)
    p.add_argument("--noise", type=float, default=1.5, help="noise norm relative to a centre")
    p.add_argument("--queries", type=int, default=2_000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument(
        "--families",
        nargs="+",
        default=["ivf_flat", "ivf_pq", "hnsw"],
        choices=["ivf_flat", "ivf_pq", "hnsw"],
    )
    p.add_argument("--nlist", type=int, default=None, help="default: the platform's rule")
    p.add_argument("--pq-m", type=int, default=None, help="default: dim / 2")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args()
    import faiss

    console = Console(width=120)
    data = clustered(args.n + args.queries, args.dim, args.clusters, args.noise, seed=0)
    x, q = data[: args.n], data[args.n :]
    ids = np.arange(args.n)
    console.print(
        f"{args.n:,} x {args.dim} vectors (noise {args.noise}), {args.queries:,} "
        f"queries, k={args.k}, target recall {args.target_recall}, faiss threads "
        f"{faiss.omp_get_max_threads()}"
    )

    results = []
    for family in args.families:
        cfg = IndexConfig(
            family=family,
            nlist=args.nlist,
            pq_m=args.pq_m,  # type: ignore[arg-type]
            hnsw_m=args.hnsw_m,
            nprobe=1,
        )
        key = factory_key(family, args.n, args.dim, cfg)
        started = time.perf_counter()
        index = build_index(x, ids, cfg)
        build_s = time.perf_counter() - started
        tuned = autotune(index, x, q, args.k, args.target_recall)
        console.print(
            f"{family} ({key}): built in {build_s:.1f} s; exact {tuned.exact_qps:,.0f} QPS"
        )
        table = Table(title=f"{family}: every setting autotune tried")
        for col in ("setting", f"recall@{args.k}", "QPS", "x exact"):
            table.add_column(col, justify="right")
        for pt in tuned.points:
            mark = " *" if pt.params == tuned.params else ""
            table.add_row(
                pt.params + mark,
                f"{pt.recall:.4f}",
                f"{pt.qps:,.0f}",
                f"{pt.qps / tuned.exact_qps:.1f}x",
            )
        console.print(table)
        results.append(
            {
                "family": family,
                "factory": key,
                "build_s": round(build_s, 1),
                "best": tuned.params,
                "recall": tuned.recall,
                "qps": tuned.qps,
                "exact_qps": tuned.exact_qps,
                "speedup": tuned.qps / tuned.exact_qps,
                "met": tuned.met,
                "points": [vars(pt) for pt in tuned.points],
            }
        )
        del index

    summary = Table(
        title=f"best point per family at recall@{args.k} >= {args.target_recall} "
        f"(noise {args.noise})"
    )
    for col in ("family", "index", "build s", "setting", f"recall@{args.k}", "QPS", "x exact"):
        summary.add_column(col, justify="right")
    for r in results:
        setting = r["best"] + ("" if r["met"] else " (target not met)")
        summary.add_row(
            r["family"],
            r["factory"],
            f"{r['build_s']:.1f}",
            setting,
            f"{r['recall']:.4f}",
            f"{r['qps']:,.0f}",
            f"{r['speedup']:.1f}x",
        )
    console.print(summary)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": results}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
