"""The evaluation's plan of work: which alphas each group of report rows is merged at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtmh.config import load_config
from mtmh.eval.evaluate import MTMH_SPEC, group_alphas
from mtmh.eval.protocol import REPORT_MODELS, EvalUser, ModelSpec, evaluate_source
from tests.tiny_serving import make_serving_run

SWEEP = [0.0, 30.0, 50.0, 70.0, 100.0]


def test_only_mtmhs_group_is_merged_at_every_alpha_of_the_sweep() -> None:
    groups: dict[tuple[str, bool], list[ModelSpec]] = {}
    for spec in REPORT_MODELS:
        groups.setdefault(spec.group, []).append(spec)
    plans = {key: group_alphas(group, SWEEP, 50.0) for key, group in groups.items()}
    assert plans.pop(MTMH_SPEC.group) == SWEEP
    # STMH and "MTMH (DAT serving)" have two heads too; the report shows them at alpha 50.
    assert {("stmh", False), ("mtmh", True)} <= set(plans)
    assert all(alphas == [50.0] for alphas in plans.values())


def test_a_row_merged_at_one_alpha_equals_its_row_of_the_whole_sweep(tmp_path: Path) -> None:
    run = make_serving_run(tmp_path / "run", seed=1)
    # The evaluation's catalog reads T1 counts and L2 topics, which a serving run lacks.
    items = pq.read_table(run / "data" / "items.parquet")
    items = items.append_column("t1_interactions", items["interactions"])
    pq.write_table(
        items.append_column("topic_l2", items["topic_l1"]), run / "data" / "items.parquet"
    )
    cfg = load_config(run / "pipeline.yaml")
    rng = np.random.default_rng(0)
    users = []
    for user in range(30):
        history = rng.choice(items.num_rows, 20, replace=False)
        truth = frozenset(rng.choice(items.num_rows, 15).tolist())
        users.append(EvalUser(user, history, history[::-1][:10], truth))
    spec = ModelSpec("MTMH (DAT serving)", "mtmh", ("engagement", "relevance"), partitioned=True)
    one = evaluate_source(run, [spec], cfg, users, [50.0])[spec.name]["by_ranking"]
    swept = evaluate_source(run, [spec], cfg, users, SWEEP)[spec.name]["by_ranking"]
    for order in ("preranker", "ann"):
        assert one[order][50.0] == swept[order][50.0]
        assert one[order][50.0]["recall@20"] > 0  # a real merge, not two empty ones
