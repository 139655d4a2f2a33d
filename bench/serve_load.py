"""Benchmark: the Serve app under a bounded HTTP load, against the in-process pipeline.

Starts a local Ray with the Serve app on a run's artifacts, then, for each concurrency level,
sends `--requests` POST /i2i requests from that many concurrent clients (one keep-alive
connection each) and prints QPS, p50/p99 latency, and every outcome: 2xx, 4xx, 5xx and
dropped connections (a request that got no HTTP response at all). Requests are the
evaluation's own: a sampled eval user's trigger with the user's history.

The baseline is the same requests answered by `InProcessRetrieval` (the evaluation's
Retriever, no Ray, no HTTP) one at a time in this process; the ratio is the app's p50 at
concurrency 1 over that p50: what the service's hops and serialization cost per request.
Before the app, each setting's own floor is measured on a trivial FastAPI ingress answering
itself, calling one trivial deployment, and calling two at once (as the graph calls its
heads), so what Serve costs on the machine is told apart from what the app adds. After
warm-up, each replica's resident memory is printed.

Everything runs once per app mode in `--modes` (graph: the deployment graph; fused: one
deployment answering in process) and per Serve setting in `--settings`:
- default: Ray's defaults (Python HTTP proxy, handle calls as Ray actor tasks, user code in
  a thread beside each replica's event loop);
- fast: RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (gRPC between replicas, user code on the replica's
  own loop, buffered logs) with RAY_SERVE_ENABLE_HA_PROXY=1 (HAProxy, in C, forwards HTTP
  straight to the ingress replicas' own HTTP servers instead of the Python proxy actor).
Each combination gets a fresh local Ray, so all are measured side by side in one run.

Every load runs once per search in `--searches`: "global" (one nearest-neighbour search per
head) and, for a run with clusters, divide and conquer with a merge strategy (the run's
clusters.visit clusters per trigger), side by side in the same app.

The last phase of each is a mixed load at the highest concurrency with `--bad-fraction` bad
requests (unknown items, alpha or k out of range, empty or oversized trigger lists,
malformed JSON, unknown strategies, visit out of range): it must show zero 5xx and zero
dropped connections, every bad request a 4xx and every good one a 200; the script exits 1
otherwise.

    python bench/serve_load.py                          # runs/ml-100k, concurrency 1 4 16
    python bench/serve_load.py --modes fused --settings fast
    python bench/serve_load.py --run runs/ml-1m --requests 1000 --concurrency 1 8 32

The load generator shares the machine with the service: on 2 cores it competes with the
replicas for CPU, so QPS here is a floor, not what a separate client machine would see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import aiohttp
from rich.console import Console
from rich.table import Table

from mtmh.config import load_config
from mtmh.eval.protocol import sample_users
from mtmh.serving.inprocess import InProcessRetrieval
from mtmh.serving.partition import GLOBAL, SEARCH_STRATEGIES
from mtmh.serving.plan import plan_i2i
from mtmh.serving.run import ServingRun

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Call:
    path: str
    body: bytes
    bad: bool  # expected to be refused with a 4xx


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    statuses: Counter[str] = field(default_factory=Counter)  # "2xx", "4xx", "5xx", "dropped"
    wrong: int = 0  # a good request not answered 200, or a bad one not answered 4xx
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        n = sum(self.statuses.values())
        return {
            "requests": n,
            "qps": n / self.seconds if self.seconds else 0.0,
            "p50_ms": 1e3 * _quantile(lat, 0.50),
            "p99_ms": 1e3 * _quantile(lat, 0.99),
            **{k: self.statuses.get(k, 0) for k in ("2xx", "4xx", "5xx", "dropped")},
            "wrong_status": self.wrong,
        }


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def good_requests(run_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """/i2i bodies from the evaluation's users: one of a user's triggers, with their history."""
    cfg = load_config(run_dir / "pipeline.yaml")
    users = sample_users(run_dir, cfg.eval)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = rng.choice(users)
        out.append(
            {
                "item_id": int(rng.choice(user.triggers)),
                "user_history": [int(i) for i in user.history[-50:]],
                "alpha": cfg.eval.alpha,
            }
        )
    return out


def bad_requests(num_items: int) -> list[tuple[str, bytes]]:
    def body(x: Any) -> bytes:
        return json.dumps(x).encode()

    return [
        ("/i2i", body({"item_id": num_items + 5})),
        ("/i2i", body({"item_id": 1, "user_history": [1, 10 * num_items]})),
        ("/i2i", body({"item_id": 1, "alpha": 150})),
        ("/i2i", body({"item_id": 1, "alpha": float("nan")})),
        ("/i2i", body({"item_id": 1, "k": 0})),
        ("/i2i", body({"item_id": 1, "k": 100_000})),
        ("/i2i", body({"item_id": "one"})),
        ("/i2i", b'{"item_id": 1'),
        ("/retrieve", body({"trigger_item_ids": []})),
        ("/retrieve", body({"trigger_item_ids": list(range(500))})),
        ("/i2i", body({"item_id": 1, "strategy": "nearest"})),
        ("/i2i", body({"item_id": 1, "strategy": "uniform", "visit": 0})),
        ("/i2i", body({"item_id": 1, "strategy": "uniform", "visit": 100_000})),
    ]


def with_search(bodies: list[dict[str, Any]], search: str) -> list[dict[str, Any]]:
    """The bodies with `search` as their strategy (global: as they are)."""
    return bodies if search == GLOBAL else [{**b, "strategy": search} for b in bodies]


async def drive(base: str, calls: list[Call], concurrency: int) -> Outcome:
    out = Outcome()
    queue: asyncio.Queue[Call] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)

    async def client() -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=60),
        ) as session:
            while not queue.empty():
                call = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    async with session.post(base + call.path, data=call.body, headers=JSON) as r:
                        await r.read()
                        status = r.status
                except (TimeoutError, aiohttp.ClientError):
                    out.statuses["dropped"] += 1
                    out.wrong += 1
                    continue
                out.latencies.append(time.perf_counter() - t0)
                out.statuses[f"{status // 100}xx"] += 1
                if (call.bad and not 400 <= status < 500) or (not call.bad and status != 200):
                    out.wrong += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    out.seconds = time.perf_counter() - started
    return out


def in_process_p50(run: ServingRun, bodies: list[dict[str, Any]]) -> tuple[float, float]:
    ref = InProcessRetrieval(run)
    plans = [
        plan_i2i(run, b["item_id"], None, b["alpha"], b["user_history"], b.get("strategy"))
        for b in bodies
    ]
    ref.answer(plans[0])  # warm-up
    lat = []
    for plan in plans:
        t0 = time.perf_counter()
        ref.answer(plan)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return statistics.median(lat), _quantile(lat, 0.99)


# Serve settings compared side by side (environment variables Ray reads at start-up).
SETTINGS = {
    "default": {},
    "fast": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
}
APP_MODES = ("graph", "fused")
MEMORY: dict[str, dict[str, float]] = {}  # "<mode>/<setting>" -> replica RSS (MiB) after warm-up


@contextlib.contextmanager
def local_serve(setting: str, cpus: int) -> Iterator[str]:
    """A fresh local Ray and Serve with `setting`'s environment (inherited by the raylet and
    every Serve actor), HTTP on a free port; yields its base URL, and shuts both down and
    restores the environment after."""
    import ray
    from ray import serve

    env = SETTINGS[setting]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # address="local": a Ray of the bench's own, never one a `ray start` left behind.
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", **env}},
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
        serve.shutdown()
        ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def serve_rows(
    run: ServingRun,
    bodies: list[dict[str, Any]],
    args: argparse.Namespace,
    mode: str,
    setting: str,
    console: Console,
) -> list[dict[str, Any]]:
    """Start a local Ray + the app in `mode` with `setting`, drive every load of every
    search, shut down."""
    from ray import serve

    from serve_app import build

    searches = {
        search: [Call("/i2i", json.dumps(b).encode(), False) for b in with_search(bodies, search)]
        for search in args.searches
    }
    good = searches[args.searches[0]]
    with local_serve(setting, args.cpus) as base:
        started = time.perf_counter()
        serve.run(
            build({"run_dir": str(run.run_dir), "mode": mode}),
            name="mtmh-bench",
            logging_config={"enable_access_log": False},
        )
        _wait_until_answering(base, good[0])
        asyncio.run(drive(base, good[:20], 2))  # load the version into its replicas: untimed
        console.print(f"{mode}/{setting}: up and warm in {time.perf_counter() - started:.1f} s")

        memory = replica_memory()
        console.print(
            f"{mode}/{setting}: replica memory (RSS, MiB) "
            + ", ".join(f"{name} {mib:,.0f}" for name, mib in memory.items())
        )
        MEMORY[f"{mode}/{setting}"] = memory
        rows: list[dict[str, Any]] = []
        for search, calls in searches.items():
            asyncio.run(drive(base, calls[:20], 2))  # the partitioned indexes load: untimed
            key = {"mode": mode, "setting": setting, "search": search}
            for c in args.concurrency:
                outcome = asyncio.run(drive(base, calls, c))
                rows.append({**key, "load": "good", "concurrency": c, **outcome.row()})
            rng = random.Random(args.seed + 1)
            bad = bad_requests(run.num_items)
            n_bad = round(args.bad_fraction * args.requests)
            mixed = calls[: args.requests - n_bad]
            mixed += [Call(*rng.choice(bad), bad=True) for _ in range(n_bad)]
            rng.shuffle(mixed)
            top = max(args.concurrency)
            outcome = asyncio.run(drive(base, mixed, top))
            load = f"mixed ({n_bad} bad)"
            rows.append({**key, "load": load, "concurrency": top, **outcome.row()})
    return rows


def floor_rows(setting: str, args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    """Serve's own floor with `setting`, on a fresh local Ray: the p50 at concurrency 1 of a
    trivial FastAPI ingress answering itself, calling one trivial deployment, and calling two
    (as the graph calls its two heads). It separates what Serve's HTTP path and one hop cost on
    this machine from what the app adds."""
    from fastapi import FastAPI
    from ray import serve

    app = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Echo:
        async def echo(self, x: int) -> int:
            return x

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(app)
    class Front:
        def __init__(self, a: Any, b: Any) -> None:
            self.a, self.b = a, b

        @app.post("/none")
        async def none(self) -> int:
            return 0

        @app.post("/one")
        async def one(self) -> int:
            return int(await self.a.echo.remote(1))

        @app.post("/two")
        async def two(self) -> int:
            return sum(await asyncio.gather(self.a.echo.remote(1), self.b.echo.remote(2)))

    with local_serve(setting, args.cpus) as base:
        serve.run(
            Front.bind(Echo.options(name="EchoA").bind(), Echo.options(name="EchoB").bind()),
            name="floor",
            logging_config={"enable_access_log": False},
        )
        rows = []
        for path, what in (
            ("/none", "HTTP only"),
            ("/one", "+1 hop"),
            ("/two", "+2 concurrent hops"),
        ):
            calls = [Call(path, b"{}", bad=False)] * min(args.requests, 300)
            _wait_until_answering(base, calls[0])
            asyncio.run(drive(base, calls[:20], 1))
            rows.append(
                {"setting": setting, "floor": what, **asyncio.run(drive(base, calls, 1)).row()}
            )
    console.print(
        f"{setting}: Serve floor " + ", ".join(f"{r['floor']} {r['p50_ms']:.2f} ms" for r in rows)
    )
    return rows


def replica_memory() -> dict[str, float]:
    """Resident memory (MiB) of each Serve replica of the app, by deployment (further replicas
    of one deployment numbered). Ray titles a replica's process "ray::ServeReplica:<app>:
    <deployment>"; the processes are found by that title on this machine."""
    import psutil

    prefix = "ray::ServeReplica:mtmh-bench:"
    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "memory_info"]):
        cmd = proc.info["cmdline"] or []
        if not cmd or not cmd[0].startswith(prefix):
            continue
        deployment = cmd[0][len(prefix) :].split()[0]
        key, n = deployment, 1
        while key in out:
            n += 1
            key = f"{deployment}#{n}"
        out[key] = proc.info["memory_info"].rss / 2**20
    return dict(sorted(out.items()))


def _wait_until_answering(base: str, call: Call, timeout_s: float = 120.0) -> None:
    """HAProxy comes up a moment after serve.run returns: wait for a first 200."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.post(base + call.path, data=call.body, headers=JSON, timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} did not answer within {timeout_s} s")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", type=Path, default=Path("runs/ml-100k"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=400, help="per concurrency level")
    p.add_argument("--bad-fraction", type=float, default=0.1)
    p.add_argument("--modes", nargs="+", choices=APP_MODES, default=list(APP_MODES))
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--searches",
        nargs="+",
        choices=SEARCH_STRATEGIES,
        default=None,
        help="default: global, and the run's clusters.strategy when it has clusters",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args()

    console = Console(width=160)
    run = ServingRun.open(args.run)
    if args.searches is None:
        strategy = load_config(run.run_dir / "pipeline.yaml").clusters.strategy
        args.searches = [GLOBAL, strategy] if run.num_clusters else [GLOBAL]
    bodies = good_requests(run.run_dir, args.requests, args.seed)
    console.print(
        f"run {run.run_dir} (version {run.version}, {run.num_items} items, K_ann {run.k_ann}, "
        f"K {run.keep}); {args.requests} requests per level"
    )
    base: dict[str, float] = {}
    for search in args.searches:
        p50, p99 = in_process_p50(run, with_search(bodies, search))
        base[search] = p50
        console.print(
            f"in-process pipeline, {search}: p50 {1e3 * p50:.2f} ms, p99 {1e3 * p99:.2f} ms"
        )

    floors = [row for setting in args.settings for row in floor_rows(setting, args, console)]
    rows = [
        row
        for mode in args.modes
        for setting in args.settings
        for row in serve_rows(run, bodies, args, mode, setting, console)
    ]

    table = Table(title=f"Serve app under load ({args.run})")
    for col in rows[0]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()))
    console.print(table)
    low = min(args.concurrency)
    ratios = {}
    p50s = {
        (r["mode"], r["setting"], r["search"]): r["p50_ms"]
        for r in rows
        if r["load"] == "good" and r["concurrency"] == low
    }
    for (mode, setting, search), p50 in p50s.items():
        ref = 1e3 * base[search]
        ratios[f"{mode}/{setting}/{search}"] = p50 / ref
        console.print(
            f"{mode}/{setting}/{search}: p50 at concurrency {low} / in-process p50: "
            f"{p50:.2f} ms / {ref:.2f} ms = [bold]{p50 / ref:.1f}x[/] (in-process + "
            f"{p50 - ref:.2f} ms)"
        )
        if search != GLOBAL:
            glob = p50s[(mode, setting, GLOBAL)] if GLOBAL in args.searches else float("nan")
            console.print(
                f"{mode}/{setting}: {search} p50 / global p50 at concurrency {low}: "
                f"{p50:.2f} / {glob:.2f} ms = [bold]{p50 / glob:.2f}x[/]"
            )
    mixed = [r for r in rows if r["load"].startswith("mixed")]
    ok = all(r["5xx"] == 0 and r["dropped"] == 0 and r["wrong_status"] == 0 for r in mixed)
    console.print(
        "mixed load: "
        + ("[green]zero 5xx, zero dropped, every status as expected" if ok else "[red]FAILED")
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "run": str(run.run_dir),
                    "version": run.version,
                    "rows": rows,
                    "in_process_p50_ms": {k: 1e3 * v for k, v in base.items()},
                    "p50_ratio": ratios,
                    "serve_floor": floors,
                    "replica_rss_mib": MEMORY,
                },
                indent=2,
            )
            + "\n"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
