"""Benchmark: FAISS IVF search against exact (flat) inner-product search, side by side.

The vectors are N synthetic unit vectors in D dimensions drawn around `--clusters` random
centres (Gaussian noise `--noise` around each centre, then normalised): retrieval embeddings
have cluster structure, and IVF's speed-up depends on it (on structureless noise no
partitioning helps). The queries are other draws from the same distribution, not indexed
points.

For each nprobe in `--nprobes`, the IVF index answers the same queries as the exact index;
the table shows recall@k against the exact top-k, queries per second of each, and their ratio.
The headline is the fastest nprobe whose recall reaches `--target-recall`. k-means training
time (on `index.max_training_points` sampled vectors) and add time are printed apart.

    python bench/index_bench.py                       # 1M x 128, k=100
    python bench/index_bench.py --n 200000 --nprobes 4 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np
from rich.console import Console
from rich.table import Table

from mtmh.config import IndexConfig
from mtmh.index.faiss_index import build_exact, build_ivf, default_nlist, search


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


def timed_search(index: object, q: np.ndarray, k: int, nprobe: int | None = None,
                 repeats: int = 2) -> tuple[np.ndarray, float]:  # fmt: skip
    best, ids = float("inf"), np.empty(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = search(index, q, k, nprobe)
        best = min(best, time.perf_counter() - t0)
    return ids, len(q) / best


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--clusters", type=int, default=2_000)
    p.add_argument("--noise", type=float, default=1.0, help="noise norm relative to a centre")
    p.add_argument("--queries", type=int, default=2_000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--nlist", type=int, default=None, help="default: the platform's rule")
    p.add_argument("--nprobes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--target-recall", type=float, default=0.95)
    args = p.parse_args()
    import faiss

    console = Console()
    data = clustered(args.n + args.queries, args.dim, args.clusters, args.noise, seed=0)
    x, q = data[: args.n], data[args.n :]
    ids = np.arange(args.n)
    cfg = IndexConfig(nlist=args.nlist, nprobe=1)
    nlist = default_nlist(args.n, cfg)
    console.print(f"{args.n:,} x {args.dim} vectors, {args.queries:,} queries, k={args.k}, "
                  f"nlist={nlist}, faiss threads={faiss.omp_get_max_threads()}")  # fmt: skip

    t0 = time.perf_counter()
    exact = build_exact(x, ids)
    exact_build = time.perf_counter() - t0
    truth, exact_qps = timed_search(exact, q, args.k)

    quantizer_t0 = time.perf_counter()
    ivf = build_ivf(x, ids, cfg)
    build_s = time.perf_counter() - quantizer_t0
    console.print(f"exact: add {exact_build:.1f} s, {exact_qps:,.0f} QPS; IVF: k-means + add "
                  f"{build_s:.1f} s")  # fmt: skip

    table = Table(title="IVF vs exact, same queries, same run")
    for col in ("nprobe", f"recall@{args.k}", "IVF QPS", "exact QPS", "speed-up"):
        table.add_column(col, justify="right")
    rows = []
    for nprobe in args.nprobes:
        found, qps = timed_search(ivf, q, args.k, nprobe)
        recall = float(
            np.mean([len(set(t) & set(f)) / args.k for t, f in zip(truth, found, strict=True)])
        )
        rows.append(
            {"nprobe": nprobe, "recall": recall, "ivf_qps": qps, "speedup": qps / exact_qps}
        )
        table.add_row(str(nprobe), f"{recall:.4f}", f"{qps:,.0f}", f"{exact_qps:,.0f}",
                      f"{qps / exact_qps:.1f}x")  # fmt: skip
    console.print(table)
    ok = [r for r in rows if r["recall"] >= args.target_recall]
    best = max(ok, key=lambda r: r["speedup"]) if ok else None
    if best:
        console.print(
            f"[bold]at recall@{args.k} >= {args.target_recall}: nprobe {best['nprobe']}, "
            f"recall {best['recall']:.4f}, {best['speedup']:.1f}x exact[/bold]"
        )
    else:
        console.print(f"[red]no nprobe reached recall {args.target_recall}[/red]")
    print(json.dumps({"n": args.n, "nlist": nlist, "kmeans_and_add_s": round(build_s, 2),
                      "exact_qps": round(exact_qps, 1), "rows": rows, "best": best}))  # fmt: skip


if __name__ == "__main__":
    main()
