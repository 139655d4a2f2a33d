"""A run's model versions: the full run, the updates made from it, and which one is served.

    RUN/                        version 0: the full run (`mtmh run`)
    RUN/versions/<n>/           version n: a whole run folder made by `mtmh update` from the
                                version serving at the time (mtmh/update/)
    RUN/versions/<n>/version.json   what it holds, what it was made from, its gate, promoted
    RUN/serving.json            the version served now and every change, newest last

A run without serving.json serves version 0. Serve follows serving.json (serve_app/ingress.py
reads it every few seconds); `promote` and `rollback` are the only writers, and each write is
one atomic rename, so a reader sees the old file or the new one, never half of either.

Example:
    promote(Path("runs/days"), 1, "gate passed")
    serving_dir(Path("runs/days"))          # runs/days/versions/1
    rollback(Path("runs/days"))             # back to 0
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtmh.atomic_file import write_atomically
from mtmh.errors import MtmhError

SERVING_FILE = "serving.json"
VERSION_FILE = "version.json"
VERSIONS = "versions"


class VersionError(MtmhError, ValueError):
    """A version that does not exist, or a rollback with nothing to go back to."""


def version_dir(root: Path, number: int) -> Path:
    """Version `number`'s run folder: the run itself for 0."""
    return root if number == 0 else root / VERSIONS / str(number)


def serving_record(root: Path) -> dict[str, Any]:
    """RUN/serving.json, or what a run that was never updated serves (version 0)."""
    path = root / SERVING_FILE
    if not path.is_file():
        return {"version": 0, "since": None, "history": []}
    return dict(json.loads(path.read_text()))


def serving_version(root: Path) -> int:
    return int(serving_record(root)["version"])


def serving_dir(root: Path) -> Path:
    """The folder Serve answers from for the run `root`."""
    return version_dir(root, serving_version(root))


def made_versions(root: Path) -> list[int]:
    """Every version on disk, 0 included, ascending (a version exists once its record does)."""
    folder = root / VERSIONS
    found = [] if not folder.is_dir() else [p for p in folder.iterdir() if p.name.isdigit()]
    return [0, *sorted(int(p.name) for p in found if (p / VERSION_FILE).is_file())]


def next_version(root: Path) -> int:
    """The number a new version gets: one past every folder, finished or not."""
    folder = root / VERSIONS
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(taken, default=0) + 1


def read_version(root: Path, number: int) -> dict[str, Any]:
    if number == 0:
        items = root / "data" / "items.parquet"
        catalog = {"items": pq.read_metadata(items).num_rows} if items.is_file() else {}
        made = {"made_at": _made_at(root), "catalog": catalog}
        return {"version": 0, "made_from": None, "promoted": True, **made}
    path = version_dir(root, number) / VERSION_FILE
    if not path.is_file():
        raise VersionError(f"{root}: no version {number} ({path} not found)")
    return dict(json.loads(path.read_text()))


def write_version(root: Path, number: int, record: dict[str, Any]) -> Path:
    path = version_dir(root, number) / VERSION_FILE
    _write_record(path, record)
    return path


def promote(root: Path, number: int, why: str) -> dict[str, Any]:
    """Serve version `number` from now on; returns the new serving record."""
    if number not in made_versions(root):
        raise VersionError(f"{root}: no version {number} to serve (made: {made_versions(root)})")
    record = serving_record(root)
    now = time.time()
    entry = {"version": number, "previous": record["version"], "at": now, "why": why}
    new = {"version": number, "since": now, "history": [*record["history"], entry]}
    _write_record(root / SERVING_FILE, new)
    if number:
        made = read_version(root, number)
        write_version(root, number, {**made, "promoted": True})
    return new


def rollback(root: Path, to: int | None = None) -> dict[str, Any]:
    """Serve an earlier version: `to`, or the newest version below the serving one that was
    ever served."""
    record = serving_record(root)
    current = record["version"]
    if to is None:
        served_before = {e["version"] for e in record["history"]} | {0}
        earlier = [v for v in served_before if v < current]
        if not earlier:
            raise VersionError(f"{root}: version {current} is served and nothing came before it")
        to = max(earlier)
    if to == current:
        raise VersionError(f"{root}: version {to} is already served")
    return promote(root, to, f"rollback from version {current}")


def _made_at(root: Path) -> float | None:
    report = root / "report.json"
    return report.stat().st_mtime if report.is_file() else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """`record` as JSON, written whole or not at all."""
    text = json.dumps(record, indent=2) + "\n"
    write_atomically(path, lambda p: p.write_text(text))
