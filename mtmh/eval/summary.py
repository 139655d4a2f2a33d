"""The end of a run on the console: where its results are, then the report's main table.

The table is report.md's first table (every model's recall and topic match at the run's
alpha, percent), read from report.json; report.md has the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from mtmh.eval.report import HEADERS, METRICS, pct

HIGHLIGHT = "MTMH"


def written_files(run_dir: Path) -> list[Path]:
    """What a person opens after a run: the reports, the plots, the logs."""
    found = [run_dir / "report.md", run_dir / "report.json", *sorted(run_dir.glob("*.png"))]
    return [p for p in found if p.is_file()]


def report_table(report: dict[str, Any]) -> Table:
    p = report["protocol"]
    order = "preranker" if p["ranking"] == "preranker" else "ANN order"
    table = Table(
        title=f"{report['dataset']}: {p['users']:,} users, MTMH at alpha {p['alpha']:g}, "
        f"{order} (percent)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("model")
    for header in HEADERS:
        table.add_column(header, justify="right")
    for name, m in report["models"].items():
        table.add_row(
            name, *(pct(m[k]) for k in METRICS), style="bold" if name == HIGHLIGHT else None
        )
    return table


def print_report(console: Console, report: dict[str, Any], run_dir: Path) -> None:
    names = ", ".join(p.name for p in written_files(run_dir))
    console.print(f"wrote {run_dir}/: {names}; logs in {run_dir / 'logs'}/", soft_wrap=True)
    console.print(report_table(report))
