"""Benchmark: promoting a new version and rolling it back while the Serve app is under load.

For each app mode, starts a local Ray with the Serve app on RUN (which follows
RUN/serving.json, serve_app/ingress.py), sends `--requests` POST /i2i requests from
`--concurrency` clients, and, once a third of them are answered, promotes another version
(`mtmh/versions.py`, what `mtmh update` does when the gate passes); at two thirds it rolls
back. It prints, per mode: requests, 5xx, dropped connections, how many answers each version
gave, and how many answers differ from what their own version answers in process (a mixed or
torn answer would). Exits 1 on any 5xx, drop or mismatch. RUN/serving.json ends as it began.

    python bench/swap_load.py --run runs/days                 # versions 0 and 1 of an update
    python bench/swap_load.py --run runs/days --requests 3000 --modes fused

The run needs two made versions (`mtmh versions RUN`); the other one is `--to`, by default the
newest version that is not served now. Requests are the evaluation's own (bench/serve_load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import aiohttp
from rich.console import Console
from rich.table import Table
from serve_load import JSON, good_requests, local_serve

from mtmh.serving.inprocess import InProcessRetrieval
from mtmh.serving.plan import plan_i2i
from mtmh.serving.run import ServingRun
from mtmh.versions import made_versions, promote, rollback, serving_version, version_dir

Answer = tuple[int, int, Any]  # request index, HTTP status (-1: dropped), body or error


async def load_with_swaps(
    base: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    root: Path,
    to: int | None,
    back: int,
) -> tuple[list[Answer], dict[str, float]]:
    """Send every body; promote `to` after a third are answered and roll back to `back` after
    two thirds (no swap when `to` is None). Returns the answers and when each swap was
    written (seconds from the start)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    answers: list[Answer] = []
    swaps: dict[str, float] = {}
    started = time.perf_counter()

    versions: set[str] = set()

    async def swap_when_due() -> None:
        n = len(answers)
        if to is None:
            return
        if n >= len(bodies) // 3 and "promote" not in swaps:
            swaps["promote"] = time.perf_counter() - started
            await asyncio.to_thread(promote, root, to, "bench/swap_load.py")
        # Back once the promoted version has answered (the replicas read serving.json every
        # few seconds), and a third of the requests are left for the way back.
        if n >= 2 * len(bodies) // 3 and len(versions) > 1 and "rollback" not in swaps:
            swaps["rollback"] = time.perf_counter() - started
            await asyncio.to_thread(rollback, root, back)

    async def client() -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    data = json.dumps(bodies[i]).encode()
                    async with session.post(base + "/i2i", data=data, headers=JSON) as r:
                        out = await r.json() if r.ok else await r.text()
                        answers.append((i, r.status, out))
                        if r.ok:
                            versions.add(out["model_version"])
                except (TimeoutError, aiohttp.ClientError) as err:
                    answers.append((i, -1, repr(err)))
                await swap_when_due()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    swaps["seconds"] = time.perf_counter() - started
    if "promote" in swaps and "rollback" not in swaps:  # too few requests to see the swap
        rollback(root, back)
    return answers, swaps


def mismatches(answers: list[Answer], bodies: list[dict[str, Any]], root: Path) -> int:
    """Answers whose (item, head) list is not their own version's in-process answer."""
    refs = {}
    for n in made_versions(root):
        ref = InProcessRetrieval(ServingRun.open(root, number=n))
        refs[ref.run.version] = ref
    wrong = 0
    for i, status, out in answers:
        if status != 200:
            continue
        ref, b = refs[out["model_version"]], bodies[i]
        plan = plan_i2i(ref.run, b["item_id"], None, b["alpha"], b["user_history"])
        want = [(c.item_id, c.head) for c in ref.answer(plan)]
        wrong += [(c["item_id"], c["head"]) for c in out["candidates"]] != want
    return wrong


def run_mode(args: argparse.Namespace, mode: str, root: Path, to: int, back: int) -> dict:
    from ray import serve

    from serve_app import build

    bodies = good_requests(version_dir(root, back), args.requests, args.seed)
    with local_serve("fast", args.cpus) as base:
        serve.run(build({"run_dir": str(root), "mode": mode}), name="mtmh-swap")
        warm = asyncio.run(load_with_swaps(base, bodies[:20], 2, root, None, back))
        if any(status != 200 for _, status, _ in warm[0]):
            raise SystemExit(f"{mode}: the app did not answer the warm-up: {warm[0][:2]}")
        answers, swaps = asyncio.run(
            load_with_swaps(base, bodies, args.concurrency, root, to, back)
        )
        time.sleep(3)  # the follower's next read, before Serve shuts down
    statuses = Counter("dropped" if s < 0 else f"{s // 100}xx" for _, s, _ in answers)
    number = {ServingRun.open(root, number=n).version: n for n in made_versions(root)}
    versions = Counter(number[out["model_version"]] for _, s, out in answers if s == 200)
    return {
        "mode": mode,
        "requests": len(answers),
        **{k: statuses.get(k, 0) for k in ("2xx", "4xx", "5xx", "dropped")},
        "answers_per_version": dict(versions),
        "mismatched": mismatches(answers, bodies, root),
        "swaps_s": {k: round(v, 2) for k, v in swaps.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", type=Path, default=Path("runs/days"))
    p.add_argument("--to", type=int, help="the version promoted under load")
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--modes", nargs="+", default=["graph", "fused"])
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSON file for the rows")
    args = p.parse_args()
    console = Console()
    root = args.run.resolve()
    back = serving_version(root)
    others = [n for n in made_versions(root) if n != back]
    to = args.to if args.to is not None else max(others, default=None)
    if to is None:
        raise SystemExit(f"{root} has one version: make another with `mtmh update` first")
    rows = [run_mode(args, mode, root, to, back) for mode in args.modes]
    table = Table(title=f"version {back} -> {to} -> {back} under load, {root}")
    for col in ("mode", "requests", "2xx", "5xx", "dropped", "per version", "mismatched"):
        table.add_column(col)
    for r in rows:
        per = ", ".join(f"v{v}: {n}" for v, n in sorted(r["answers_per_version"].items()))
        cells = [r["mode"], r["requests"], r["2xx"], r["5xx"], r["dropped"], per, r["mismatched"]]
        table.add_row(*map(str, cells))
    console.print(table)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    bad = [r for r in rows if r["5xx"] or r["dropped"] or r["mismatched"] or r["4xx"]]
    if bad or any(len(r["answers_per_version"]) != 2 for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
