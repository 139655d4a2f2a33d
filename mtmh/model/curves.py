"""Loss curves of a training run, from RUN/models/<variant>/metrics.jsonl to a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # A resumed run reports some steps twice, and an epoch's validation row can share its
    # step with a loss row: rows of one step merge, the later report winning per key.
    by_step: dict[int, dict[str, float]] = {}
    for r in rows:
        by_step.setdefault(int(r["step"]), {}).update(r)
    return [by_step[s] for s in sorted(by_step)]


def plot_loss_curves(metrics_path: Path, out_path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    # Per-head losses, "<head>/<loss>" (validation rows, "val/...", are plotted by the report).
    keys = sorted({k for r in rows for k in r if "/" in k and not k.startswith("val/")})
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
