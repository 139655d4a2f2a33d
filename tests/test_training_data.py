"""What the trainer is fed: pairs held out for validation are gone, duplicates are counted
once, and a batch mixes users the way a random sample does (pairs are written user by user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtmh.config import build_config
from mtmh.validation import HoldoutSplit, HoldoutUser

USERS, PER_USER, FILES = 256, 50, 16


def write_user_sorted_pairs(run: Path, duplicate: bool = False) -> pa.Table:
    """RUN/data/pairs written user by user, as prepare writes them."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(USERS), PER_USER)
    trig = rng.integers(0, 500, len(user))
    target = rng.integers(0, 500, len(user))
    if duplicate:  # every user repeats the same 10 pairs 5 times
        trig = np.tile(np.repeat(np.arange(10), 5), USERS)
        target = trig + 100
    table = pa.table({
        "user_id": pa.array(user, pa.int64()), "trigger_id": pa.array(trig, pa.int32()),
        "target_id": pa.array(target, pa.int32()),
        "gap": pa.array(np.ones(len(user)), pa.int16()),
        "target_timestamp": pa.array(np.tile(np.arange(PER_USER), USERS), pa.int64()),
    })  # fmt: skip
    folder = run / "data" / "pairs"
    folder.mkdir(parents=True)
    for part in range(FILES):  # files of whole users, in user order
        rows = slice(part * len(user) // FILES, (part + 1) * len(user) // FILES)
        pq.write_table(table.slice(rows.start, rows.stop - rows.start), folder / f"{part}.parquet")
    return table


def _distinct_users_per_batch(ds, cfg) -> list[int]:  # type: ignore[no-untyped-def]
    from mtmh.model.train_loop import batch_options

    opts = batch_options(cfg, epoch=0)
    batches = ds.iter_batches(batch_format="numpy", **opts)
    return [len(np.unique(b["user_id"])) for b in batches]


@pytest.mark.usefixtures("ray_local")
def test_a_batch_holds_about_as_many_users_as_a_random_sample(tmp_path: Path) -> None:
    from mtmh.model.train_loop import training_pairs

    write_user_sorted_pairs(tmp_path)
    batch = 256
    cfg = build_config(overrides=[f"train.batch_size={batch}", "train.dedup_pairs=false"])
    ds = training_pairs(tmp_path, cfg, HoldoutSplit([]), ("user_id", "trigger_id", "target_id"))
    distinct = _distinct_users_per_batch(ds, cfg)
    # A uniform sample of 256 of the 12,800 pairs misses a user with p = (1 - 1/256)^256.
    expected = USERS * (1 - (1 - PER_USER / (USERS * PER_USER)) ** batch)
    assert len(distinct) == USERS * PER_USER // batch
    assert np.mean(distinct) > 0.85 * expected, (np.mean(distinct), expected)


@pytest.mark.usefixtures("ray_local")
def test_held_out_pairs_are_dropped_and_duplicates_counted_once(tmp_path: Path) -> None:
    from mtmh.model.train_loop import target_log_frequency, training_pairs

    table = write_user_sorted_pairs(tmp_path, duplicate=True)
    cut = 40
    held = [HoldoutUser(u, np.arange(3), np.arange(3), np.arange(3, 5), cut) for u in (0, 1, 2)]
    assert cut < PER_USER
    split = HoldoutSplit(held)
    cfg = build_config()
    rows = training_pairs(tmp_path, cfg, split).to_pandas()
    assert list(rows.columns) == ["trigger_id", "target_id", "count"]
    assert not rows.duplicated(["trigger_id", "target_id"]).any()
    keep = split.training_mask(table["user_id"].to_numpy(), table["target_timestamp"].to_numpy())
    assert rows["count"].sum() == keep.sum() < len(table)
    # The logQ distribution is the deduplicated stream's: 10 targets, one pair each.
    log_freq = target_log_frequency(training_pairs(tmp_path, cfg, split), 200)
    counts = np.exp(log_freq)
    assert np.allclose(counts[100:110], counts[100]) and counts[100] > 1.5 * counts[0]
