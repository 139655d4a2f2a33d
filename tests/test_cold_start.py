"""New items (cold start): the figures match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtmh.eval.cold_start import ColdStartMeter, hours_to_retrievable, new_items


def test_new_items_are_those_nobody_touched_in_t1() -> None:
    assert new_items(np.array([3, 0, 1, 0])).tolist() == [False, True, False, True]


def test_recall_of_new_items_counts_only_users_who_engaged_with_one() -> None:
    new = new_items(np.array([5, 0, 2, 0, 0, 1]))  # items 1, 3, 4 are new
    meter = ColdStartMeter(new, ks=(2, 4))
    meter.add([1, 0, 2, 3], truth={1, 4, 5})  # new wanted: 1, 4; 1 at rank 1
    meter.add([0, 2, 5, 3], truth={0, 3})  # new wanted: 3, at rank 4
    meter.add([0, 2], truth={2, 5})  # no new item wanted: not counted for recall
    got = meter.result()
    assert got["cold_users"] == 2
    assert got["cold_recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["cold_recall@4"] == pytest.approx((0.5 + 1.0) / 2)
    # Standard error over the two users: sample sd of (0.5, 1.0) / sqrt(2) = 0.25.
    assert got["cold_recall@4_se"] == pytest.approx(0.25)
    # Slots: 10 served, of which new: 1, 3 (first list) and 3 (second): 3.
    assert got["cold_share"] == pytest.approx(3 / 10)


def test_a_model_that_never_serves_a_new_item_shows_zero_not_nothing() -> None:
    meter = ColdStartMeter(new_items(np.array([0, 4, 4])), ks=(2,))
    meter.add([1, 2], truth={0})
    got = meter.result()
    assert got["cold_users"] == 1 and got["cold_recall@2"] == 0.0
    assert got["cold_share"] == 0.0
    empty = ColdStartMeter(new_items(np.array([1, 1])), ks=(2,)).result()
    assert empty["cold_users"] == 0 and math.isnan(empty["cold_recall@2"])


def test_items_that_arrived_after_the_last_full_training_are_new_even_once_engaged() -> None:
    counts = np.array([3, 0, 1, 2, 5])
    assert new_items(counts, arrived_from=3).tolist() == [False, True, False, True, True]
    assert new_items(counts, arrived_from=None).tolist() == new_items(counts).tolist()


def test_topic_match_of_new_triggers_counts_only_their_lists() -> None:
    from mtmh.eval.topic_match import TopicLevel

    labels = [frozenset({"a"}), frozenset({"a"}), frozenset({"b"}), frozenset({"a"})]
    level = TopicLevel(labels, np.full(4, 0.5))
    meter = ColdStartMeter(new_items(np.array([2, 2, 2, 1]), 3), ks=(2,), levels={"l2": level})
    meter.add_trigger(0, [1, 2])  # an old trigger: not counted
    meter.add_trigger(3, [0, 1, 2])  # the new one: 2 of 3 labelled candidates share "a"
    got = meter.result()
    assert got["cold_triggers"] == 1
    assert got["cold_l2_match"] == pytest.approx(2 / 3)
    assert got["cold_l2_lift"] == pytest.approx((2 / 3) / 0.5)


def test_hours_to_retrievable_is_the_first_hour_from_which_recall_stays_above_noise() -> None:
    # ItemCF-like: nothing at the drop, noise at 6 h, clear from 24 h on.
    assert (
        hours_to_retrievable({0: (0.0, 0.0), 6: (0.01, 0.01), 24: (0.05, 0.01), 48: (0.08, 0.01)})
        == 24
    )
    # A content model retrieves new items before any log about them.
    assert hours_to_retrievable({0: (0.3, 0.04), 24: (0.31, 0.04)}) == 0
    # One lucky cut does not count, and a model that never gets there is None.
    assert hours_to_retrievable({0: (0.0, 0.0), 6: (0.05, 0.01), 24: (0.0, 0.0)}) is None
    assert hours_to_retrievable({0: (float("nan"), float("nan"))}) is None
