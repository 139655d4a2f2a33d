"""Benchmark: `prepare` on Ray Data against a single-process pyarrow reference, side by side.

Both engines do the same work on the same synthetic log: read the parquet shards, validate
every row with the same `LogValidator`, time-split, build pairs and write the same tables.
The reference holds the whole log in memory in one process; the Ray Data path streams it
through user buckets. Each run is its own subprocess; the parent samples the proportional set
size (PSS) of that subprocess and all its descendants (Ray's raylet, GCS and workers included),
so shared memory is not counted twice.

Prints rows/s and peak memory per engine and size, the Ray/reference throughput ratio, and the
memory growth from the small to the large input (10x rows). Targets (issue 2): Ray Data's
peak memory stays bounded as the input grows 10x; its throughput is not below the reference.

    python bench/prepare_bench.py                  # 1M, 10M and 100M (Ray only) interactions
    python bench/prepare_bench.py --rows 200000 2000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def synthetic_overrides(rows: int, cache: Path, rows_per_bucket: int) -> list[str]:
    return [
        # Memory of the streaming path is bounded by the bucket size, which the config fixes;
        # one bucket size for every input size is what makes the 10x comparison meaningful.
        f"data.rows_per_bucket={rows_per_bucket}",
        "data.dataset=synthetic",
        f"data.data_dir={cache}",
        "data.synthetic.num_items=100000",
        f"data.synthetic.num_users={max(rows // 50, 100)}",
        f"data.synthetic.num_interactions={rows}",
        "data.synthetic.shard_rows=1000000",
    ]


def run_reference(overrides: list[str], out: Path) -> dict[str, Any]:
    """The same work in one process with pyarrow, the whole log in memory."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtmh.config import build_config
    from mtmh.data.buckets import finish_table
    from mtmh.data.prepare import _fold_item_stats, assign_item_ids
    from mtmh.data.sources import get_source
    from mtmh.data.split import hour_histogram, time_cut
    from mtmh.data.validate import VALID_COLUMNS, LogValidator, check_log_schema

    cfg = build_config(overrides=overrides)
    source = get_source(cfg.data).load(Path(cfg.data.data_dir or "."))
    started = time.perf_counter()
    check_log_schema(source.logs)
    items, _ = assign_item_ids(source.items)
    log = pq.read_table([str(p) for p in source.logs.paths])
    available = items["available_from"].fill_null(np.iinfo(np.int64).min).to_numpy()
    validator = LogValidator(items["raw_id"].combine_chunks(), available, 0, 2**62, 1, {})
    validated = pa.concat_tables(
        validator(pa.Table.from_batches([b])) for b in log.to_batches(max_chunksize=65_536)
    )
    del log
    good = validated.filter(pa.compute.greater_equal(validated["bucket"], 0))
    pq.write_table(
        validated.filter(pa.compute.equal(validated["bucket"], -1)), out / "quarantine.parquet"
    )
    cut = time_cut(cfg.data.split, *hour_histogram(good["timestamp"].to_numpy()))
    counts = finish_table(good.select(VALID_COLUMNS), 0, 0, out, cut, cfg.data.pairs.window)
    pq.write_table(_fold_item_stats(items, out / "_work" / "item_stats"), out / "items.parquet")
    return {"seconds": time.perf_counter() - started, "rows": validated.num_rows, **counts}


def warm_up_workers() -> float:
    """Start Ray's workers and import the library in them; returns the seconds it took.

    The reference runs with its imports done, and a long-lived cluster's workers are warm too.
    The one-time start-up is reported on its own instead of being folded into throughput.
    """
    import ray

    def touch(batch: dict[str, Any]) -> dict[str, Any]:
        import mtmh.data.prepare  # noqa: F401

        return batch

    started = time.perf_counter()
    ray.data.range(64, override_num_blocks=8).map_batches(touch, batch_size=8).materialize()
    return time.perf_counter() - started


def run_ray(overrides: list[str], out: Path) -> dict[str, Any]:
    from mtmh.config import build_config
    from mtmh.data.prepare import prepare
    from mtmh.ray_utils import init_ray

    cfg = build_config(overrides=overrides)
    started = time.perf_counter()
    init_ray(cfg.ray)
    startup = time.perf_counter() - started + warm_up_workers()
    started = time.perf_counter()
    stats = prepare(cfg, out)
    return {
        "seconds": time.perf_counter() - started,
        "rows": stats["rows_read"],
        "pairs": stats["pairs"],
        "startup_s": startup,
        "buckets": stats["buckets"],
    }


class PeakPss:
    """Samples the PSS of a process and all its descendants in a background thread.

    Also keeps, for the moment of the peak, the PSS by role (driver, Ray workers, raylet,
    GCS, other), so growth can be traced to the part that grew.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.breakdown: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid == self.root.pid:
            return "driver"
        name = proc.name()
        if name.startswith("ray::"):
            return "workers"
        return name if name in ("raylet", "gcs_server") else "other"

    def _sample(self) -> tuple[int, dict[str, float]]:
        by_role: dict[str, float] = {}
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, by_role
        for proc in procs:
            try:
                pss = proc.memory_full_info().pss
                role = self._role(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            by_role[role] = by_role.get(role, 0) + pss
        return int(sum(by_role.values())), by_role

    def _run(self) -> None:
        while not self._stop.is_set():
            total, by_role = self._sample()
            if total > self.peak:
                self.peak = total
                self.breakdown = {k: round(v / 2**20) for k, v in sorted(by_role.items())}
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(engine: str, rows: int, cache: Path, rows_per_bucket: int) -> dict[str, Any]:
    """Run one engine on one size in a subprocess; return its result plus peak memory."""
    with tempfile.TemporaryDirectory(dir=cache) as out:
        cmd = [sys.executable, __file__, "--child", engine, "--rows", str(rows)]
        cmd += ["--cache", str(cache), "--out", out, "--rows-per-bucket", str(rows_per_bucket)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        with PeakPss(proc.pid) as mem:
            stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{engine} at {rows} rows failed (exit {proc.returncode})")
        result = json.loads(stdout.strip().splitlines()[-1])
    return {
        **result,
        "engine": engine,
        "peak_mb": mem.peak / 2**20,
        "peak_breakdown_mb": mem.breakdown,
        "rows_per_s": result["rows"] / result["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument(
        "--reference-max-rows",
        type=int,
        default=10_000_000,
        help="largest input the in-memory reference is run on (it needs ~0.5 GB per 1M rows)",
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-cache"))
    parser.add_argument("--child", choices=["ray", "reference"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rows-per-bucket", type=int, default=250_000)
    args = parser.parse_args()
    if args.child:  # inside a measured subprocess
        overrides = synthetic_overrides(args.rows[0], args.cache, args.rows_per_bucket)
        run = run_ray if args.child == "ray" else run_reference
        print(json.dumps(run(overrides, args.out)))
        return

    from mtmh.config import build_config
    from mtmh.data.sources import get_source

    args.cache.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        cfg = build_config(overrides=synthetic_overrides(rows, args.cache, args.rows_per_bucket))
        t = time.perf_counter()
        get_source(cfg.data).load(args.cache)  # generate once, outside the timed runs
        print(f"synthetic {rows:,} rows ready ({time.perf_counter() - t:.1f} s)", flush=True)
        engines = ["reference", "ray"] if rows <= args.reference_max_rows else ["ray"]
        if "reference" not in engines:
            print(
                f"  reference skipped: {rows:,} rows would need ~{rows / 2e6:.0f} GB in one process"
            )
        for engine in engines:
            r = measure(engine, rows, args.cache, args.rows_per_bucket)
            results.append(r)
            extra = (
                f"  (+{r['startup_s']:.1f} s Ray start and worker warm-up, {r['buckets']} buckets)"
                if engine == "ray"
                else ""
            )
            print(
                f"  {engine:9s} {r['rows']:>11,} rows  {r['seconds']:7.1f} s  "
                f"{r['rows_per_s']:>10,.0f} rows/s  peak {r['peak_mb']:7.0f} MiB{extra}",
                flush=True,
            )
            print(f"            peak by process (MiB): {r['peak_breakdown_mb']}", flush=True)

    print("\nside by side (same run, same machine):")
    by = {(r["engine"], r["rows"]): r for r in results}
    sizes = sorted({r["rows"] for r in results})
    for rows in sizes:
        if ("reference", rows) not in by:
            continue
        ray_r, ref_r = by[("ray", rows)], by[("reference", rows)]
        print(
            f"  {rows:>11,} rows: throughput ray/reference = "
            f"{ray_r['rows_per_s'] / ref_r['rows_per_s']:.2f}   "
            f"peak memory ray/reference = {ray_r['peak_mb'] / ref_r['peak_mb']:.2f}"
        )
    for engine in ("ray", "reference"):
        runs = sorted(rows for e, rows in by if e == engine)
        for lo, hi in itertools.pairwise(runs):
            growth = by[(engine, hi)]["peak_mb"] / by[(engine, lo)]["peak_mb"]
            print(
                f"  {engine:9s} peak memory x{growth:.2f} for x{hi / lo:.0f} rows "
                f"({lo:,} -> {hi:,})"
            )
    Path("runs").mkdir(exist_ok=True)
    Path("runs/prepare_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
