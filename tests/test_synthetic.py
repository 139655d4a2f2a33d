import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtmh.config import SyntheticConfig, build_config
from mtmh.data.prepare import prepare
from mtmh.data.sources.synthetic import DAY, SyntheticSource, generate

SMALL = SyntheticConfig(
    num_items=600,
    num_users=300,
    num_interactions=20_000,
    num_topics_l1=4,
    topics_l2_per_l1=3,
    shard_rows=5_000,
    popular_cross_topic_rate=0.3,
    text_noise=0.0,
    seed=7,
)


def _load(root: Path) -> tuple:
    items = pq.read_table(root / "items.parquet")
    logs = pq.read_table(root / "interactions")
    return items, logs


def test_deterministic_and_sharded(tmp_path: Path) -> None:
    generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b")
    (items_a, logs_a), (items_b, logs_b) = _load(tmp_path / "a"), _load(tmp_path / "b")
    assert items_a.equals(items_b) and logs_a.equals(logs_b)
    assert logs_a.num_rows == SMALL.num_interactions
    shards = list((tmp_path / "a" / "interactions").glob("*.parquet"))
    assert len(shards) >= SMALL.num_interactions // SMALL.shard_rows
    assert max(pq.ParquetFile(s).metadata.num_rows for s in shards) <= 2 * SMALL.shard_rows


def test_planted_structure(tmp_path: Path) -> None:
    generate(SMALL, tmp_path)
    items, logs = _load(tmp_path)
    arrival = items["available_from"].to_numpy()
    item = logs["item_id"].to_numpy()
    assert (logs["timestamp"].to_numpy() >= arrival[item]).all()  # no engagement before arrival
    assert (arrival > SMALL.start_timestamp).mean() == pytest.approx(
        SMALL.fresh_item_fraction, abs=0.05
    )
    # Popularity is heavy-tailed: the top 5% of items take a large share of events.
    counts = np.sort(np.bincount(item, minlength=SMALL.num_items))[::-1]
    assert counts[: SMALL.num_items // 20].sum() > 0.3 * counts.sum()
    # Users stay mostly on their topics: same-L2 co-engagement far above chance (1/12).
    l2 = np.array([t[0] for t in items["topic_l2"].to_pylist()])
    users = logs["user_id"].to_numpy()
    same_user = users[1:] == users[:-1]
    same_topic = (l2[item[1:]] == l2[item[:-1]])[same_user].mean()
    assert same_topic > 3 / 12
    # Texts carry the topic's vocabulary, never the label itself.
    text, label = items["text"][0].as_py(), items["topic_l2"][0].as_py()[0]
    assert label not in text


def _same_topic_rate(items, logs) -> float:
    """Share of a user's consecutive events on the same fine topic."""
    l2 = np.array([t[0] for t in items["topic_l2"].to_pylist()])
    item, users = logs["item_id"].to_numpy(), logs["user_id"].to_numpy()
    return float((l2[item[1:]] == l2[item[:-1]])[users[1:] == users[:-1]].mean())


def _own_word_rate(items, topic_words: dict[str, set[str]]) -> float:
    """Share of text words that belong to the item's own fine topic's vocabulary."""
    own = total = 0
    labels = [t[0] for t in items["topic_l2"].to_pylist()]
    for text, label in zip(items["text"].to_pylist(), labels, strict=True):
        words = text.split()
        own += sum(w in topic_words[label] for w in words)
        total += len(words)
    return own / total


def test_knobs_move_what_they_name(tmp_path: Path) -> None:
    """More cross-topic co-engagement makes consecutive events less on-topic; text noise makes
    the text carry fewer of the item's own topic words; neither touches the other."""
    from dataclasses import replace

    from mtmh.data.sources.vocabulary import topic_tree

    tree = topic_tree(SMALL.num_topics_l1, SMALL.topics_l2_per_l1)
    topic_words = {name: set(words) for _, _, kids in tree for name, words in kids}
    rates, own = {}, {}
    for name, cfg in {
        "base": SMALL,
        "cross": replace(SMALL, popular_cross_topic_rate=0.7),
        "noisy": replace(SMALL, text_noise=0.5),
    }.items():
        generate(cfg, tmp_path / name)
        items, logs = _load(tmp_path / name)
        rates[name], own[name] = _same_topic_rate(items, logs), _own_word_rate(items, topic_words)
    assert rates["cross"] < 0.7 * rates["base"]
    assert own["noisy"] < 0.8 * own["base"]
    assert own["cross"] == own["base"]  # the text stream does not depend on the logs' knobs
    assert rates["noisy"] == rates["base"]  # text noise draws from its own stream


@pytest.mark.usefixtures("ray_local")
def test_synthetic_prepares(tmp_path: Path) -> None:
    cfg = build_config(
        overrides=[
            "data.dataset=synthetic",
            f"data.data_dir={tmp_path}",
            "data.synthetic.num_items=300",
            "data.synthetic.num_users=200",
            "data.synthetic.num_interactions=8000",
        ]
    )
    stats = prepare(cfg, tmp_path / "run")
    assert stats["interactions"] == 8000 and sum(stats["quarantined"].values()) == 0
    assert stats["eval_users"] > 0 and stats["pairs"] > 0
    assert SyntheticSource(cfg.data.synthetic).load(tmp_path).items.num_rows == 300


def test_a_burst_of_items_arrives_on_one_day_and_is_engaged_only_after(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, burst_item_fraction=0.2, burst_at=0.8)
    generate(cfg, tmp_path / "burst")
    generate(SMALL, tmp_path / "plain")
    items, logs = _load(tmp_path / "burst")
    arrival = items["available_from"].to_numpy()
    at = cfg.start_timestamp + 0.8 * cfg.span_days * DAY
    burst = (arrival >= at) & (arrival < at + DAY)
    # About a fifth of the non-fresh items, all on that day.
    assert 0.12 * cfg.num_items < burst.sum() < 0.22 * cfg.num_items
    item, ts = logs["item_id"].to_numpy(), logs["timestamp"].to_numpy()
    assert (ts >= arrival[item]).all()
    assert np.isin(np.flatnonzero(burst), item).mean() > 0.5  # most are engaged after arriving
    # The fresh items drawn before the burst arrive as without it.
    plain = _load(tmp_path / "plain")[0]["available_from"].to_numpy()
    assert np.array_equal(arrival[~burst], plain[~burst])
