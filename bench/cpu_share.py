"""Benchmark: where this machine's CPU goes while something runs, by kind of process.

Reads /proc twice, `--seconds` apart, and prints each kind of process's share of a core
over that window: Ray names its worker processes after what they run ("ray::RayTrainWorker",
"ray::SplitCoordinator", ...), and every other process is named by its executable. Run it
beside a pipeline to see how much of the machine its trainings get and how much Ray's own
processes (controllers, coordinators, the GCS, the dashboard agent) take.

    .venv/bin/python bench/cpu_share.py --seconds 60            # while a pipeline trains
    .venv/bin/python bench/cpu_share.py --seconds 60 --json /tmp/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path


def process_times() -> dict[int, tuple[int, str]]:
    """{pid: (user + system clock ticks so far, the process's kind)} of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:  # the process ended between the listing and the read
            continue
        name_end = stat.rindex(")")
        fields = stat[name_end + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        out[int(entry)] = (ticks, kind_of(argv, stat[stat.index("(") + 1 : name_end]))
    return out


def kind_of(argv: list[bytes], comm: str) -> str:
    """ "ray::TrainController.run" for a Ray worker, the script or executable otherwise."""
    first = argv[0].decode(errors="replace") if argv and argv[0] else ""
    if first.startswith("ray::"):
        return first.split(" ")[0]
    if not first:
        return f"[{comm}]"  # a kernel thread
    words = [a.decode(errors="replace") for a in argv if a]
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return Path(script or first).name


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def share(seconds: float) -> dict[str, object]:
    """{"busy_cores", "by_kind": {kind: cores}, "processes": {kind: count}} over `seconds`."""
    before, (busy0, total0) = process_times(), machine_ticks()
    time.sleep(seconds)
    after, (busy1, total1) = process_times(), machine_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    by_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for pid, (ticks, kind) in after.items():
        if pid in before:
            by_kind[kind] += (ticks - before[pid][0]) / hz / seconds
            count[kind] += 1
    ranked = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))
    busy = cores * (busy1 - busy0) / max(total1 - total0, 1)
    return {
        "seconds": seconds,
        "cores": cores,
        "busy_cores": busy,
        "by_kind": ranked,
        "processes": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--top", type=int, default=15, help="kinds to print")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    result = share(args.seconds)
    by_kind: dict[str, float] = result["by_kind"]  # type: ignore[assignment]
    count: dict[str, int] = result["processes"]  # type: ignore[assignment]
    print(
        f"{result['busy_cores']:.2f} of {result['cores']} cores busy over {args.seconds:g} s; "
        "per kind of process, in cores:"
    )
    for kind, cores in list(by_kind.items())[: args.top]:
        print(f"  {cores:6.3f}  {kind} ({count[kind]})")
    ray_own = sum(
        c for k, c in by_kind.items() if k.startswith("ray::") and k != "ray::RayTrainWorker"
    )
    print(f"  Ray's worker processes other than the training workers: {ray_own:.3f} cores")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
