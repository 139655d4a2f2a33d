"""The MovieLens sources: the fine topic level has headroom, and item text is catalog content
(title and Freebase facts), never the labels."""

from __future__ import annotations

import numpy as np
import pytest

from mtmh.data.fetch import default_data_dir
from mtmh.data.sources.base import SourceData
from mtmh.data.sources.movielens import MovieLens1M, MovieLens100K
from mtmh.eval.topic_match import random_match_probability


def _random_rate(items, level: str) -> float:
    p = random_match_probability(items[f"topic_{level}"].to_pylist())
    return float(np.nanmean(p))


def _labels_stay_out_of_the_content(data: SourceData) -> None:
    rows = data.items.select(["text", "concepts", "topic_l1", "topic_l2"]).to_pylist()
    for row in rows:
        words = {w for line in row["text"].splitlines() for w in line.split()}
        words |= {w for c in row["concepts"] for w in c.split()}
        assert not words & set(row["topic_l2"]), row["text"]  # Freebase genre ids


def test_ml100k_fine_level_has_headroom_and_text_has_facts() -> None:
    data = MovieLens100K().load(default_data_dir())
    items = data.items
    # Random pairs matched 59% with every Freebase genre; the fine level keeps it under 15%.
    assert _random_rate(items, "l2") <= 0.15
    assert _random_rate(items, "l1") == pytest.approx(0.346, abs=0.005)
    labelled = sum(bool(x) for x in items["topic_l2"].to_pylist())
    assert 1_300 <= labelled <= 1_596
    texts = items["text"].to_pylist()
    with_facts = sum(len(t.splitlines()) > 1 for t in texts)
    assert with_facts >= 1_590  # every movie with a Freebase entity has facts
    assert texts[0].splitlines()[0] == "Toy Story (1995)"
    _labels_stay_out_of_the_content(data)


@pytest.mark.slow
def test_ml1m_links_freebase_by_title_and_year() -> None:
    data = MovieLens1M().load(default_data_dir())
    items = data.items
    assert _random_rate(items, "l2") <= 0.15
    labelled = sum(bool(x) for x in items["topic_l2"].to_pylist())
    assert labelled >= 1_200  # the movies that match an ml-100k title and year
    rows = {r["raw_id"]: r for r in items.select(["raw_id", "text"]).to_pylist()}
    toy_story = rows["Toy Story (1995)"]["text"].splitlines()
    assert toy_story[0] == "Toy Story (1995)"
    assert any(line.startswith("starring m.") for line in toy_story[1:])
    _labels_stay_out_of_the_content(data)
