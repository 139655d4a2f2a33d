"""Diversity and fairness of served lists, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mtmh.eval.diversity import (
    DiversityMeter,
    EvalCatalog,
    gini,
    intra_list_similarity,
    least_popular_half,
)
from mtmh.eval.report import diversity_table
from mtmh.eval.topic_match import TopicLevel


def test_gini_is_zero_for_equal_exposure_and_n_minus_one_over_n_for_one_item() -> None:
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([0, 1, 1, 1])) == pytest.approx(0.25)
    assert np.isnan(gini(np.zeros(3)))


def test_intra_list_similarity_is_the_mean_cosine_over_distinct_pairs() -> None:
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # Pairs: (e1, e1) = 1, (e1, e2) = 0 twice.
    assert intra_list_similarity(np.stack([e1, e1, e2])) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 4))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    gram = v @ v.T
    assert intra_list_similarity(v) == pytest.approx(gram[~np.eye(7, dtype=bool)].mean())
    assert np.isnan(intra_list_similarity(v[:1]))


def test_the_least_popular_half_breaks_ties_by_item_id() -> None:
    assert least_popular_half(np.array([5, 1, 1, 9])).tolist() == [False, True, True, False]
    assert least_popular_half(np.array([2, 2, 2])).tolist() == [True, False, False]


def _catalog() -> EvalCatalog:
    l1 = [frozenset({"a"}), frozenset({"a", "b"}), frozenset({"c"}), frozenset()]
    nan = np.full(4, np.nan)
    content = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]], np.float32)
    return EvalCatalog(
        levels={"l1": TopicLevel(l1, nan)},
        tail=least_popular_half(np.array([5, 1, 1, 9])),  # items 1 and 2
        content=content,
        clusters=np.array([0, 0, 1, 1]),
    )


def test_the_meter_gives_per_user_means_and_catalog_wide_exposure() -> None:
    meter = DiversityMeter(_catalog())
    meter.add([0, 1])  # topics {a, b}; one cluster; cosine 0.6
    meter.add([2])  # topics {c}; one cluster; one item: no pair, no ILS
    got = meter.result()
    assert got["topics_l1"] == pytest.approx(1.5)
    assert got["topics_l1_se"] == pytest.approx(0.5)  # values 2 and 1
    assert got["clusters"] == pytest.approx(1.0)
    assert got["ils"] == pytest.approx(0.6) and np.isnan(got["ils_se"])  # one user had pairs
    assert got["coverage"] == pytest.approx(0.75)  # items 0, 1, 2 of 4
    assert got["exposure_gini"] == pytest.approx(0.25)  # exposure [1, 1, 1, 0]
    assert got["tail_share"] == pytest.approx(2 / 3)  # items 1 and 2 of 3 exposures


def test_a_run_without_clusters_or_content_leaves_those_measures_out() -> None:
    cat = _catalog()
    meter = DiversityMeter(EvalCatalog(cat.levels, cat.tail, None, None))
    meter.add([0, 1, 2])
    got = meter.result()
    assert "clusters" not in got and "ils" not in got
    assert got["topics_l1"] == 3


def test_the_report_table_has_a_cell_per_column_with_or_without_clusters() -> None:
    meter = DiversityMeter(_catalog())
    meter.add([0, 1])
    meter.add([2, 3])
    for rows in (
        {"A": meter.result()},
        {"A": {k: v for k, v in meter.result().items() if not k.startswith("clusters")}},
    ):
        lines = diversity_table(rows)
        assert len({line.count("|") for line in lines}) == 1
