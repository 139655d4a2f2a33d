"""The w_r sweep: the report's pure parts, and a tiny sweep through Ray Tune in a local Ray."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from mtmh.config import load_config
from mtmh.sweep.report import mean_by_w_r, mean_se, pareto_front, recommend, relevance_trend
from tests.tiny_data import TINY_SYNTHETIC


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(1.0, 5.0), (2.0, 4.0), (1.5, 3.0), (3.0, 1.0), (2.0, 4.0)]
    assert pareto_front(points) == [0, 1, 4, 3]  # (1.5, 3) is beaten by (2, 4)


def test_recommendation_is_the_most_relevant_point_without_recall_loss() -> None:
    def sweep(*rows: tuple[float, float, float]) -> list[dict[str, float]]:
        return [{"alpha": a, "recall@500": r, "l2_match": l2, "l1_match": 0.0} for a, r, l2 in rows]

    low = sweep((0, 0.30, 0.9), (50, 0.41, 0.6), (100, 0.40, 0.5))
    high = sweep((0, 0.20, 0.95), (50, 0.39, 0.7), (100, 0.40, 0.5))
    trials = [
        {"w_r": 0.5, "seed": 0, "alpha_sweep": low},
        {"w_r": 5.0, "seed": 0, "alpha_sweep": high},
    ]
    pick = recommend(trials, tolerance=0.0)
    assert pick is not None and (pick["w_r"], pick["alpha"]) == (0.5, 50)
    loose = recommend(trials, tolerance=0.015)  # now w_r 5 at alpha 50 qualifies and wins on L2
    assert loose is not None and (loose["w_r"], loose["alpha"]) == (5.0, 50)


TINY = [
    *TINY_SYNTHETIC,
    "train.report_every=2",
    "sweep.w_r_values=[0.0, 1.0]",
    "sweep.seeds=[0]",
]


@pytest.mark.usefixtures("ray_local")
def test_a_tiny_sweep_runs_through_tune_and_resumes(tmp_path: Path) -> None:
    from mtmh.content.encode import encode_content
    from mtmh.data.prepare import prepare
    from mtmh.sweep.report import write_sweep_report
    from mtmh.sweep.tuner import EXPERIMENT, run_sweep, sweep_dir

    cfg = load_config(overrides=TINY)
    run = tmp_path / "run"
    prepare(cfg, run)
    encode_content(cfg, run)
    records = run_sweep(cfg, run)
    summary = write_sweep_report(records, cfg, sweep_dir(run))

    trials = json.loads((sweep_dir(run) / "wr_sweep.json").read_text())
    assert [(t["w_r"], t["seed"], t["status"]) for t in trials] == [
        (0.0, 0, "evaluated"),
        (1.0, 0, "evaluated"),
    ]
    for t in trials:
        assert 0.0 <= t["metrics"]["recall@500"] <= 1.0
        assert [row["alpha"] for row in t["alpha_sweep"]] == [0, 30, 50, 70, 100]
    table_rows = re.findall(r"^\| w_r \d", (sweep_dir(run) / "wr_sweep.md").read_text(), re.M)
    assert len(table_rows) == 2
    assert (sweep_dir(run) / "wr_sweep.png").stat().st_size > 0
    assert summary["recommended"] is not None
    # Tune saw the training losses as they were reported (what ASHA needs), then the final
    # evaluation; and wrote TensorBoard logs.
    experiment = sweep_dir(run) / EXPERIMENT
    for record in records:
        rows = (Path(record["path"]) / "result.json").read_text().splitlines()
        assert len(rows) >= 3 and "relevance/l_e" in json.loads(rows[0])
        assert json.loads(rows[-1])["evaluated"] == 1.0
    assert list(experiment.rglob("events.out.tfevents*"))

    # Restoring a finished sweep retrains nothing and returns the same trials.
    again = run_sweep(cfg, run, resume=True)
    assert [(r["w_r"], r["metrics"]["recall@500"]) for r in again] == [
        (r["w_r"], r["metrics"]["recall@500"]) for r in records
    ]


def _trial(w_r: float, seed: int, l2: float) -> dict[str, Any]:
    row = {"recall@500": 0.5, "l1_match": 0.5, "l2_match": l2}
    return {"w_r": w_r, "seed": seed, "metrics": row, "alpha_sweep": [{"alpha": 50, **row}]}


def test_seed_statistics_tell_an_effect_from_noise() -> None:
    assert mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / math.sqrt(3)))
    # L2 rises by 0.10 with seed spread 0.01: beyond the noise.
    clear = [_trial(w, s, l2 + 0.01 * s) for w, l2 in ((0.0, 0.20), (5.0, 0.30)) for s in range(3)]
    means = mean_by_w_r(clear)
    assert means[0.0]["seeds"] == 3 and means[5.0]["l2_match"] == pytest.approx(0.31)
    assert means[5.0]["l2_match_se"] == pytest.approx(0.01 / math.sqrt(3))
    assert "rises beyond the noise" in relevance_trend(means)
    # The same means with a spread of 0.2 across seeds: not beyond the noise.
    noisy = [
        _trial(w, s, l2 + 0.2 * (s - 1)) for w, l2 in ((0.0, 0.20), (5.0, 0.30)) for s in range(3)
    ]
    assert "does not move beyond the noise" in relevance_trend(mean_by_w_r(noisy))
    one_seed = mean_by_w_r([_trial(0.0, 0, 0.2), _trial(5.0, 0, 0.3)])
    assert "no standard error" in relevance_trend(one_seed)
