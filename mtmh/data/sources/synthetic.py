"""`synthetic`: a seeded generator of items and logs with the structure MTMH is about.

What it plants, and why:
- a two-level topic tree; each item belongs to one L2 topic and its text is drawn from that
  topic's (and its L1 parent's) real-English vocabulary, so a text encoder sees the topics;
- power-law (Zipf) popularity, independent of topic;
- users with a few L2 interests: most events come from those topics, weighted by popularity;
- `popular_cross_topic_rate` of events come from global popularity regardless of topic: the
  popular, off-topic co-engagement that makes co-engagement models lose relevance;
- `text_noise` of an item's text words come from a random fine topic's vocabulary: the
  knob for how much the text, and so the teacher, knows about the item's topic;
- fresh items (`fresh_item_fraction`) that arrive during the log, with no engagement before,
  and optionally a burst of them on one day (`burst_item_fraction` at `burst_at`);
- side features a model may use: a creator id (creators mostly stay within one topic), a format
  code, and two float features;
- generated tags (`concepts`) for the content encoder's concept tower: 2-4 hashtags drawn
  from the words of the item's topics, a fifth of them from a random other topic (tagging is
  noisy). Tags are vocabulary words, never the topic names that serve as evaluation labels.

Output (under the cache dir, keyed by the config's hash) is the `parquet:PATH` layout, written
shard by shard: memory is bounded by `shard_rows`, not by the number of interactions.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtmh.config import SyntheticConfig, config_hash
from mtmh.data.sources.base import SourceData
from mtmh.data.sources.parquet import find_logs, read_item_table
from mtmh.data.sources.vocabulary import FILLER_WORDS, topic_tree

log = logging.getLogger(__name__)
DAY = 86_400
NUM_FORMATS = 4
# Part of the cache key: bump it when the generator's output changes for the same config.
GENERATOR_VERSION = 2
TAG_NOISE = 0.2  # share of tags drawn from a random topic instead of the item's own


class _Catalog:
    """Item-level arrays the event sampler needs."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
        n = cfg.num_items
        self.num_topics = cfg.num_topics_l1 * cfg.topics_l2_per_l1
        topic = rng.integers(0, self.num_topics, size=n)
        topic[: min(n, self.num_topics)] = np.arange(min(n, self.num_topics))  # no empty topic
        self.topic = topic
        rank = rng.permutation(n) + 1  # popularity rank, independent of topic
        self.popularity = rank.astype(np.float64) ** -cfg.popularity_exponent
        self.global_cdf = np.cumsum(self.popularity) / self.popularity.sum()

        # Per-topic CDFs laid end to end: topic t occupies (t, t+1] of `topic_cdf`.
        self.by_topic = np.argsort(topic, kind="stable")
        weights = self.popularity[self.by_topic]
        topic_sorted = topic[self.by_topic]
        totals = np.bincount(topic_sorted, weights=weights, minlength=self.num_topics)
        self.topic_cdf = np.cumsum(weights / totals[topic_sorted])
        self.topic_start = np.searchsorted(topic_sorted, np.arange(self.num_topics))
        self.topic_end = np.searchsorted(topic_sorted, np.arange(self.num_topics), side="right")
        head = np.zeros(self.num_topics, dtype=np.int64)  # the most popular item per topic
        for t in range(self.num_topics):
            members = self.by_topic[self.topic_start[t] : self.topic_end[t]]
            head[t] = members[np.argmax(self.popularity[members])]
        self.topic_head = head

        # Fresh items arrive during the log; topic heads never do, so they can stand in.
        start, span = cfg.start_timestamp, cfg.span_days * DAY
        fresh = rng.random(n) < cfg.fresh_item_fraction
        fresh[head] = False
        self.available_from = np.where(
            fresh, start + (0.1 + 0.9 * rng.random(n)) * span, start - 365 * DAY
        ).astype(np.int64)
        if cfg.burst_item_fraction:  # drawn only when asked: other logs stay as they were
            burst = (rng.random(n) < cfg.burst_item_fraction) & ~fresh
            burst[head] = False
            arrive = start + cfg.burst_at * span + rng.random(int(burst.sum())) * DAY
            self.available_from[burst] = arrive.astype(np.int64)

    def sample_global(self, rng: np.random.Generator, size: int) -> np.ndarray:
        idx = np.searchsorted(self.global_cdf, rng.random(size), side="right")
        return np.minimum(idx, len(self.global_cdf) - 1)

    def sample_in_topic(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.topic_cdf, topics + rng.random(len(topics)), side="right")
        pos = np.clip(pos, self.topic_start[topics], self.topic_end[topics] - 1)
        return self.by_topic[pos]


def _item_table(cfg: SyntheticConfig, cat: _Catalog, rng: np.random.Generator) -> pa.Table:
    tree = topic_tree(cfg.num_topics_l1, cfg.topics_l2_per_l1)
    l2_names = [child[0] for _, _, children in tree for child in children]
    l2_words = [child[1] for _, _, children in tree for child in children]
    l1_of_l2 = [i for i, (_, _, children) in enumerate(tree) for _ in children]
    n = cfg.num_items
    texts = []
    n_l2 = rng.integers(3, 6, size=n)
    n_l1 = rng.integers(1, 3, size=n)
    n_fill = rng.integers(0, 3, size=n)
    # Text noise has its own seeded stream: text_noise=0 leaves every other draw as it was.
    noise_rng = np.random.default_rng([cfg.seed, 0x7E47])
    for i in range(n):
        t = int(cat.topic[i])
        words = list(rng.choice(l2_words[t], n_l2[i], replace=False))
        words += list(rng.choice(tree[l1_of_l2[t]][1], n_l1[i], replace=False))
        if cfg.text_noise > 0:
            words = [
                str(noise_rng.choice(l2_words[noise_rng.integers(len(l2_words))]))
                if noise_rng.random() < cfg.text_noise
                else w
                for w in words
            ]
        words += list(rng.choice(FILLER_WORDS, n_fill[i], replace=False))
        rng.shuffle(words)
        texts.append(" ".join(words))
    tags = _tags(cfg, cat.topic, l2_words, [tree[p][1] for p in l1_of_l2])
    # Creators specialise: 80% of an item's creator draws come from its topic's creators.
    creators_per_topic = max(1, n // (50 * cat.num_topics))
    own = cat.topic * creators_per_topic + rng.integers(0, creators_per_topic, size=n)
    anyone = rng.integers(0, cat.num_topics * creators_per_topic, size=n)
    creator = np.where(rng.random(n) < 0.8, own, anyone)
    return pa.table(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "text": texts,
            "concepts": tags,
            "available_from": cat.available_from,
            "topic_l1": [[tree[l1_of_l2[t]][0]] for t in cat.topic],
            "topic_l2": [[l2_names[t]] for t in cat.topic],
            "dense_quality": rng.beta(2.0, 2.0, size=n).astype(np.float32),
            "dense_log_length": rng.normal(0.0, 1.0, size=n).astype(np.float32),
            "cat_creator": creator.astype(np.int32),
            "cat_format": rng.integers(0, NUM_FORMATS, size=n).astype(np.int32),
        }
    )


def _tags(
    cfg: SyntheticConfig, topic: np.ndarray, l2_words: list[list[str]], l1_words: list[list[str]]
) -> list[list[str]]:
    """Generated hashtags per item. A separate seeded stream, so adding tags left the rest of
    the generated data unchanged."""
    rng = np.random.default_rng([cfg.seed, 0x7A65])
    out = []
    for t in topic:
        n = int(rng.integers(2, 5))
        noisy = rng.random(n) < TAG_NOISE
        source = np.where(noisy, rng.integers(0, len(l2_words), size=n), t)
        words = {str(rng.choice(l2_words[s] + l1_words[s])) for s in source}
        out.append(sorted(f"#{w}" for w in words))
    return out


def _user_topics(
    cfg: SyntheticConfig, rng: np.random.Generator, users: int, num_topics: int
) -> np.ndarray:
    """[U, topics_per_user] L2 interests: a first topic, then mostly siblings under its L1."""
    per_l1 = cfg.topics_l2_per_l1
    first = rng.integers(0, num_topics, size=users)
    rest = rng.integers(0, num_topics, size=(users, cfg.topics_per_user - 1))
    sibling = (first // per_l1)[:, None] * per_l1 + rng.integers(0, per_l1, size=rest.shape)
    rest = np.where(rng.random(rest.shape) < 0.5, sibling, rest)
    return np.concatenate([first[:, None], rest], axis=1)


def _events(
    cfg: SyntheticConfig,
    cat: _Catalog,
    rng: np.random.Generator,
    user_ids: np.ndarray,
    counts: np.ndarray,
) -> pa.Table:
    """All events of a chunk of users, sorted by user then time."""
    total = int(counts.sum())
    topics = _user_topics(cfg, rng, len(user_ids), cat.num_topics)
    owner = np.repeat(np.arange(len(user_ids)), counts)
    start, span = cfg.start_timestamp, cfg.span_days * DAY
    # Each user is active over a random sub-window of the log.
    u_start = start + rng.random(len(user_ids)) * span * 0.7
    u_len = (0.3 + 0.7 * rng.random(len(user_ids))) * (start + span - u_start)
    ts = (u_start[owner] + rng.random(total) * u_len[owner]).astype(np.int64)

    popular = rng.random(total) < cfg.popular_cross_topic_rate
    chosen_topic = topics[owner, rng.integers(0, cfg.topics_per_user, size=total)]
    item = np.where(popular, cat.sample_global(rng, total), cat.sample_in_topic(rng, chosen_topic))
    for _ in range(3):  # an item cannot be engaged with before it arrives: redraw
        early = ts < cat.available_from[item]
        if not early.any():
            break
        redraw = cat.sample_in_topic(rng, chosen_topic[early])
        item[early] = redraw
    early = ts < cat.available_from[item]
    item[early] = cat.topic_head[chosen_topic[early]]

    order = np.lexsort((ts, owner))
    return pa.table(
        {
            "user_id": user_ids[owner][order].astype(np.int64),
            "item_id": item[order].astype(np.int64),
            "timestamp": ts[order],
            "weight": np.ones(total, dtype=np.float32),
        }
    )


def generate(cfg: SyntheticConfig, root: Path) -> None:
    """Write items.parquet and interactions/part-*.parquet under `root`, shard by shard."""
    if root.exists():
        shutil.rmtree(root)
    (root / "interactions").mkdir(parents=True)
    rng = np.random.default_rng(cfg.seed)
    cat = _Catalog(cfg, rng)
    pq.write_table(_item_table(cfg, cat, rng), root / "items.parquet")
    # Heavy-tailed user activity; every user gets at least one event.
    activity = rng.lognormal(0.0, 1.0, size=cfg.num_users)
    extra = rng.multinomial(max(cfg.num_interactions - cfg.num_users, 0), activity / activity.sum())
    counts = (extra + (1 if cfg.num_interactions >= cfg.num_users else 0)).astype(np.int64)
    bounds = np.searchsorted(
        np.cumsum(counts), np.arange(cfg.shard_rows, counts.sum(), cfg.shard_rows), side="right"
    )
    for shard, users in enumerate(np.split(np.arange(cfg.num_users), bounds)):
        if len(users) == 0:
            continue
        shard_rng = np.random.default_rng([cfg.seed, shard + 1])
        table = _events(cfg, cat, shard_rng, users, counts[users])
        pq.write_table(table, root / "interactions" / f"part-{shard:05d}.parquet")
        log.info("synthetic shard %d: %d events", shard, table.num_rows)
    (root / "_SUCCESS").write_text("ok\n")


class SyntheticSource:
    name = "synthetic"

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg

    def load(self, cache_dir: Path) -> SourceData:
        root = cache_dir / "synthetic" / f"v{GENERATOR_VERSION}-{config_hash(self.cfg)}"
        if not (root / "_SUCCESS").exists():
            log.info("generating synthetic dataset under %s", root)
            generate(self.cfg, root)
        items, spec = read_item_table(root / "items.parquet")
        return SourceData(
            items, spec, find_logs(root), f"synthetic (seed {self.cfg.seed}) at {root}"
        )
