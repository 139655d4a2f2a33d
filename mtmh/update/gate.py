"""The gate a new version passes before it is served.

Each gated model is compared with itself before the update, on the same data: the warm-started
training validates the earlier weights (grown to the new catalog) before its first step, then
after every epoch (mtmh/model/train_loop.py, summary.json's `start_validation_score` and
`validation_score`). Both are the validation split of the new version, carved from the newest
window of its T1 and held out of its training pairs, so neither model has seen it. The new
version passes when every gated model's best score is at most `tolerance` (a fraction) below
its score before the update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtmh.config import UpdateConfig
from mtmh.errors import ArtifactError


def model_gate(summary: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """One model's figures: its score before and after the update, their ratio, and whether
    it passes."""
    before = summary.get("start_validation_score")
    scores = summary.get("validation_score") or []
    if before is None or not scores:
        raise ArtifactError(
            f"{summary.get('outputs')}: no validation before and after the warm start "
            "(an update needs the holdout split: holdout.users > 0)"
        )
    after = max(scores)  # early stopping ships the best epoch
    return {
        "serving": before,
        "new": after,
        "ratio": round(after / before, 4) if before else None,
        "passed": after >= before * (1.0 - tolerance),
    }


def gate(run_dir: Path, trained: list[str], uc: UpdateConfig) -> dict[str, Any]:
    """Every trained model's figures, and the verdict over the gated ones."""
    unknown = [m for m in uc.gate_models if m not in trained]
    if unknown:
        raise ArtifactError(f"update.gate_models: {unknown} not trained in this run ({trained})")
    models = {}
    for name in trained:
        summary = json.loads((run_dir / "models" / name / "summary.json").read_text())
        models[name] = {**model_gate(summary, uc.tolerance), "gated": name in uc.gate_models}
    passed = all(m["passed"] for m in models.values() if m["gated"])
    return {"tolerance": uc.tolerance, "models": models, "passed": passed}
