"""The pages a person opens in a browser: the explore page at `/` (serve_app/static/explore.html,
one static file with a little JS and no build step) and the run's report at `/report`.

The explore page talks to the same API as any client: `/items` to search titles, `/i2i` to
retrieve (once at alpha 100 and once at 0 for the two heads' own lists, once at the slider's
alpha for the merged list). The report page is RUN/report.md rendered on the server, followed
by the run's plots and, when the run has one, the w_r sweep's table and Pareto plot.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from pathlib import Path

from markdown_it import MarkdownIt

# What the report page shows, relative to the run directory, in this order.
REPORT = "report.md"
SWEEP_REPORT = "tune/wr_sweep.md"
PLOT_FOLDERS = (".", "tune")  # every PNG directly in these folders

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 1em 1em 0 0; }
figure img { max-width: 520px; border: 1px solid #ddd; }
"""


@cache
def explore_page() -> str:
    return resources.files("serve_app").joinpath("static/explore.html").read_text("utf-8")


def report_files(run_dir: Path) -> dict[str, Path]:
    """The plots the report page may serve, by the name its URL uses ("tune/wr_sweep.png").
    Only these are served: a request names a key of this map, never a path."""
    files = {}
    for folder in PLOT_FOLDERS:
        for png in sorted((run_dir / folder).glob("*.png")):
            files[png.relative_to(run_dir).as_posix()] = png
    return files


def _markdown(text: str) -> str:
    # html=False: any markup inside the report is shown as text, never run.
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def report_page(run_dir: Path, version: str) -> str:
    """RUN/report.md as HTML, then every plot, then the sweep's report when there is one."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mtmh report: {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>",
        "<body><nav><a href='/'>explore</a><a href='/report'>report</a>"
        "<a href='/docs'>API</a></nav>",
        f"<p><small>model {html.escape(version)} · {html.escape(str(run_dir))}</small></p>",
    ]
    report = run_dir / REPORT
    if report.is_file():
        parts.append(f"<article id='report'>{_markdown(report.read_text())}</article>")
    else:
        parts.append(
            f"<p id='report'>No report for this run yet: ray_jobs/evaluate.py writes "
            f"{html.escape(str(report))}.</p>"
        )
    plots = report_files(run_dir)
    if plots:
        parts.append("<h2>Plots</h2><div id='plots'>")
        for name in plots:
            src = html.escape(f"/report/files/{name}", quote=True)
            parts.append(
                f"<figure><img src='{src}' alt='{html.escape(name)}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
        parts.append("</div>")
    sweep = run_dir / SWEEP_REPORT
    if sweep.is_file():
        parts.append(f"<article id='sweep'>{_markdown(sweep.read_text())}</article>")
    parts.append("</body></html>")
    return "\n".join(parts)
