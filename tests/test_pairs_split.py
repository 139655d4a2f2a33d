from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtmh.config import SplitConfig
from mtmh.data.pairs import build_pairs, naive_pairs
from mtmh.data.split import HOUR, hour_histogram, merge_histograms, time_cut

events = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 50), st.integers(0, 6)),  # user, time, item
    max_size=60,
)


@given(events=events, window=st.integers(1, 5))
@settings(max_examples=200, deadline=None)
def test_vectorized_pairs_match_naive_loop(events: list[tuple[int, int, int]], window: int) -> None:
    histories: dict[int, list[tuple[int, int]]] = {}
    for user, ts, item in events:
        histories.setdefault(user, []).append((ts, item))
    rows = sorted((u, ts, i) for u, evs in histories.items() for ts, i in evs)
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    table = build_pairs(arr[:, 0].astype(np.int32), arr[:, 2].astype(np.int32), arr[:, 1], window)
    got = list(
        zip(
            *(table[c].to_pylist() for c in ("user_id", "trigger_id", "target_id", "gap")),
            strict=True,
        )
    )
    assert Counter(got) == naive_pairs(histories, window)


def test_pairs_worked_example() -> None:
    # One user, history a b c a: window 2 -> (a,b,1) (b,c,1) (c,a,1) (a,c,2) (b,a,2); a->a dropped
    table = build_pairs(
        np.zeros(4, np.int32),
        np.array([0, 1, 2, 0], np.int32),
        np.arange(4, dtype=np.int64),
        window=2,
    )
    pairs = set(
        zip(
            table["trigger_id"].to_pylist(),
            table["target_id"].to_pylist(),
            table["gap"].to_pylist(),
            strict=True,
        )
    )
    assert pairs == {(0, 1, 1), (1, 2, 1), (2, 0, 1), (0, 2, 2), (1, 0, 2)}


def test_quantile_cut_on_merged_histograms() -> None:
    part_a = hour_histogram(np.array([0, 10, 3 * HOUR, 3 * HOUR + 5]))
    part_b = hour_histogram(np.array([HOUR, 7 * HOUR, 9 * HOUR]))
    hours, counts = merge_histograms([part_a, part_b])
    assert hours.tolist() == [0, 1, 3, 7, 9] and counts.tolist() == [2, 1, 2, 1, 1]
    # 7 events; 0.5 -> the 3.5th event falls in hour 3 -> cut at end of hour 3.
    assert time_cut(SplitConfig(t1_fraction=0.5), hours, counts) == 4 * HOUR
    assert time_cut(SplitConfig(mode="timestamp", cut_timestamp=123), hours, counts) == 123
