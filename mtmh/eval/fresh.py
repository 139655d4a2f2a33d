"""Fresh-content convergence (spec section 7): how far the embeddings of little-engaged items
still are from where training leaves them, update by update.

Training snapshots the fresh items' embeddings every N steps (train.fresh_snapshot_every,
RUN/models/<variant>/fresh/step-*.npz); the delta at step t is the mean L2 distance between
an item's embedding at t and at the last snapshot. A model whose fresh items settle early has
a curve that falls to zero sooner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def convergence_curve(fresh_dir: Path, head: str) -> dict[str, list[float]]:
    """{"steps": [...], "delta": [...], "items": [n]} for one head; empty without snapshots."""
    files = sorted(fresh_dir.glob("step-*.npz"))
    if not files:
        return {"steps": [], "delta": [], "items": []}
    with np.load(files[-1]) as last:
        ref = last[head]
        n = len(last["item_id"])
    steps, deltas = [], []
    for f in files:
        with np.load(f) as snap:
            steps.append(float(f.stem.removeprefix("step-")))
            deltas.append(float(np.linalg.norm(snap[head] - ref, axis=1).mean()))
    return {"steps": steps, "delta": deltas, "items": [float(n)]}


def fresh_convergence(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    """The curves the report plots: MTMH's two heads against the co-engagement model (ItemCF)."""
    models = run_dir / "models"
    curves = {
        "MTMH (engagement head)": convergence_curve(models / "mtmh" / "fresh", "engagement"),
        "MTMH (relevance head)": convergence_curve(models / "mtmh" / "fresh", "relevance"),
        "ItemCF": convergence_curve(models / "itemcf" / "fresh", "engagement"),
    }
    return {name: c for name, c in curves.items() if c["steps"]}
