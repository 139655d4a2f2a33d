"""Benchmark: catalog encoding on a Ray Data actor pool against a bare in-process loop.

Both sides run the same `ItemContentEmbedder` (MiniLM text tower + the trained content tower)
over the same items and write the same parquet file. The reference is one process looping
over batches with torch using every core; the Ray side is `embed_catalog` (an autoscaling
actor pool, one thread per actor) streamed into `write_embeddings`, as the job runs it. Both
timings include loading the model; starting Ray is done once beforehand and not timed.

Prints items/s per side and the Ray/in-process throughput ratio (target >= 0.8, issue 3; Ray's
own issue 44905 reports 0.83 for a similar comparison).

    python bench/encode_bench.py                      # 20,000 synthetic items, 2 repeats
    python bench/encode_bench.py --items 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def write_items(path: Path, n: int, seed: int) -> None:
    """`n` synthetic items (real-English topic texts and tags) in the RUN/data items layout."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtmh.config import SyntheticConfig
    from mtmh.data.sources.synthetic import _Catalog, _item_table

    cfg = SyntheticConfig(num_items=n, seed=seed)
    rng = np.random.default_rng(seed)
    table = _item_table(cfg, _Catalog(cfg, rng), rng)
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(range(n), pa.int32()),
                "text": table["text"],
                "image_uri": pa.nulls(n, pa.string()),
                "concepts": table["concepts"],
            }
        ),
        path,
    )


class BatchClock:
    """Wraps a batch iterator and notes when each batch arrives, to split start-up (process
    start, imports, model load) from steady-state throughput."""

    def __init__(self, batches: Iterable[dict[str, Any]]) -> None:
        self.batches = batches
        self.arrivals: list[tuple[float, int]] = []  # (time, items in batch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches:
            self.arrivals.append((time.perf_counter(), len(batch["item_id"])))
            yield batch

    def steady_rate(self) -> float:
        """Items per second after the first batch arrived."""
        (t0, _), (t1, _) = self.arrivals[0], self.arrivals[-1]
        return sum(n for _, n in self.arrivals[1:]) / (t1 - t0)


def run_in_process(
    items: Path, encoder: Path, out: Path, batch_size: int, threads: int
) -> tuple[float, float]:
    import pyarrow.parquet as pq

    from mtmh.content.embedder import ItemContentEmbedder
    from mtmh.content.encode import write_embeddings

    started = time.perf_counter()
    embedder = ItemContentEmbedder(encoder, threads=threads)
    table = pq.read_table(items, columns=["item_id", "text", "image_uri"])
    clock = BatchClock(
        embedder({name: b.column(name).to_numpy(zero_copy_only=False) for name in b.schema.names})
        for b in table.to_batches(max_chunksize=batch_size)
    )
    counts = write_embeddings(clock, out, embedder.spec.dim, table.num_rows)
    assert counts["items"] == table.num_rows
    return time.perf_counter() - started, clock.steady_rate()


def run_ray(items: Path, encoder: Path, out: Path, cfg: Any, n: int) -> tuple[float, float]:
    from mtmh.content.encode import embed_catalog, write_embeddings

    started = time.perf_counter()
    ds = embed_catalog(items, encoder, cfg)
    clock = BatchClock(ds.iter_batches(batch_size=None))
    counts = write_embeddings(clock, out, 128, n)
    assert counts["items"] == n
    return time.perf_counter() - started, clock.steady_rate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPU budget")
    parser.add_argument(
        "--actors", type=int, default=None, help="fixed pool size (default: autoscale 1..cpus)"
    )
    parser.add_argument("--json", type=Path, default=Path("runs/encode_bench.json"))
    args = parser.parse_args()

    from mtmh.config import ContentConfig, ContentTrainConfig, RayConfig
    from mtmh.content.encode import train_encoder
    from mtmh.ray_utils import init_ray

    work = Path(tempfile.mkdtemp(prefix="encode-bench-"))
    items, encoder = work / "items.parquet", work / "encoder"
    write_items(items, args.items, seed=0)
    train_cfg = ContentTrainConfig(epochs=2, max_items=2000)
    train_encoder(items, ContentConfig(train=train_cfg), 0, encoder, threads=args.cpus)
    # Same CPU budget on both sides: one process with `cpus` threads, or actors whose threads
    # add up to `cpus`. Each actor asks Ray for one logical CPU whatever its thread count: an
    # actor holding every CPU would starve the read tasks that feed it, and the job would hang.
    actors = args.actors or args.cpus
    threads = max(1, args.cpus // actors)
    ray_cfg = ContentConfig(
        batch_size=args.batch_size,
        actors_min=args.actors or 1,
        actors_max=actors,
        actor_cpus=1.0,
        actor_threads=threads,
    )
    init_ray(RayConfig(num_cpus=args.cpus, object_store_memory_mb=1024))
    times: dict[str, list[float]] = {"in_process": [], "ray_data": []}
    steady: dict[str, list[float]] = {"in_process": [], "ray_data": []}
    for rep in range(args.repeats):
        for name in ("in_process", "ray_data"):
            out = work / f"{name}.parquet"
            seconds, rate = (
                run_in_process(items, encoder, out, args.batch_size, args.cpus)
                if name == "in_process"
                else run_ray(items, encoder, out, ray_cfg, args.items)
            )
            times[name].append(seconds)
            steady[name].append(rate)
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()))

    rates = {k: args.items / statistics.median(v) for k, v in times.items()}
    steady_rates = {k: statistics.median(v) for k, v in steady.items()}
    result = {
        "items": args.items,
        "cpus": args.cpus,
        "batch_size": args.batch_size,
        "ray_pool": {"min": ray_cfg.actors_min, "max": ray_cfg.actors_max, "threads": threads},
        "seconds": times,
        "items_per_second": {k: round(v, 1) for k, v in rates.items()},
        "steady_items_per_second": {k: round(v, 1) for k, v in steady_rates.items()},
        "ratio_ray_over_in_process": round(rates["ray_data"] / rates["in_process"], 3),
        "steady_ratio_ray_over_in_process": round(
            steady_rates["ray_data"] / steady_rates["in_process"], 3
        ),
    }
    pool = f"{ray_cfg.actors_min}..{ray_cfg.actors_max} actors x {threads} thread(s)"
    print(f"\n{args.items:,} items, {args.cpus} CPUs, batch {args.batch_size}, Ray pool {pool}")
    print("                    end to end    steady state (after the first batch)")
    for key, label in (("in_process", "in-process loop"), ("ray_data", "Ray Data actors")):
        print(f"  {label:16s}: {rates[key]:8.1f} items/s  {steady_rates[key]:8.1f} items/s")
    print(
        f"  ratio Ray / in-process: {result['ratio_ray_over_in_process']:.3f} end to end, "
        f"{result['steady_ratio_ray_over_in_process']:.3f} steady (target >= 0.8)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
