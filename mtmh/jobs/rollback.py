"""Serve an earlier version of a run: `mtmh rollback RUN [--to N]` (mtmh/jobs/versions.py)."""

from __future__ import annotations

import sys

from mtmh.jobs.versions import main as versions_main


def main(argv: list[str] | None = None) -> int:
    return versions_main(argv, "rollback")


if __name__ == "__main__":
    sys.exit(main())
