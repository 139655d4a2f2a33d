"""A run's model versions: which exist, what each was made from, its gate, which is served.

mtmh versions runs/days                  # the table
mtmh versions runs/days --promote 2      # serve version 2 (Serve follows within seconds)
mtmh rollback runs/days                  # serve the version before the served one
mtmh rollback runs/days --to 0           # or any version

No Ray: these read and write RUN/serving.json and RUN/versions/<n>/version.json only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mtmh.job_args import job_parser
from mtmh.job_output import JobOutput, run_job
from mtmh.versions import made_versions, promote, read_version, rollback, serving_version


def print_versions(console: Console, root: Path) -> None:
    served = serving_version(root)
    table = Table(title=f"versions of {root}", title_justify="left")
    for col in ("", "version", "made", "from", "items", "gate (new / before)", "promoted"):
        table.add_column(col)
    for n in made_versions(root):
        v = read_version(root, n)
        made = v.get("made_at")
        gated = [m for m in (v.get("gate") or {}).get("models", {}).values() if m["gated"]]
        figures = ", ".join(f"{m['ratio']:.3f}x" for m in gated) if gated else "(full run)"
        catalog = v.get("catalog", {})
        table.add_row(
            "▶" if n == served else "",
            str(n),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(made)) if made else "?",
            "" if v.get("made_from") is None else str(v["made_from"]),
            str(catalog.get("items", "")),
            figures,
            "yes" if v.get("promoted") else "no",
        )
    console.print(table)


def main(argv: list[str] | None = None, action: str = "versions") -> int:
    parser = job_parser(__doc__)
    parser.add_argument("run", type=Path, help="the run directory")
    if action == "rollback":
        parser.add_argument("--to", type=int, help="the version to serve (default: the one before)")
    else:
        parser.add_argument("--promote", type=int, metavar="N", help="serve version N")
    args = parser.parse_args(argv)
    root = args.run.resolve()

    def body(out: JobOutput) -> int:
        if action == "rollback":
            record = rollback(root, args.to)
            out.console.print(f"serving version {record['version']} (rolled back)")
        elif args.promote is not None:
            record = promote(root, args.promote, "promoted by hand")
            out.console.print(f"serving version {record['version']}")
        print_versions(out.console, root)
        return 0

    return run_job(action, root, args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
