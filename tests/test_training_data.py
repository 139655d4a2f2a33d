"""What the trainer is fed (mtmh/model/training_pairs.py): pairs held out for validation are
gone, duplicates are counted once, a batch mixes users the way a random sample does (pairs are
written user by user), and the pairs are built once per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtmh.config import build_config
from mtmh.holdout import HoldoutSplit, HoldoutUser
from mtmh.model.training_pairs import MANIFEST, ensure_training_pairs, write_training_pairs

USERS, PER_USER, FILES, ITEMS = 256, 50, 16, 500


def write_user_sorted_pairs(run: Path, duplicate: bool = False) -> pa.Table:
    """RUN/data/pairs written user by user, as prepare writes them (with items.parquet).
    Without `duplicate`, a pair's trigger is its user's id, so a batch's distinct triggers
    are its distinct users."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(USERS), PER_USER)
    trig = user.copy()
    target = rng.integers(0, ITEMS, len(user))
    if duplicate:  # every user repeats the same 10 pairs 5 times
        trig = np.tile(np.repeat(np.arange(10), 5), USERS)
        target = trig + 100
    table = pa.table(
        {
            "user_id": pa.array(user, pa.int64()),
            "trigger_id": pa.array(trig, pa.int32()),
            "target_id": pa.array(target, pa.int32()),
            "gap": pa.array(np.ones(len(user)), pa.int16()),
            "target_timestamp": pa.array(np.tile(np.arange(PER_USER), USERS), pa.int64()),
        }
    )
    folder = run / "data" / "pairs"
    folder.mkdir(parents=True)
    for part in range(FILES):  # files of whole users, in user order
        rows = slice(part * len(user) // FILES, (part + 1) * len(user) // FILES)
        pq.write_table(table.slice(rows.start, rows.stop - rows.start), folder / f"{part}.parquet")
    items = pa.table({"item_id": pa.array(np.arange(ITEMS), pa.int32())})
    pq.write_table(items, run / "data" / "items.parquet")
    return table


@pytest.mark.usefixtures("ray_local")
def test_a_batch_holds_about_as_many_users_as_a_random_sample(tmp_path: Path) -> None:
    import ray

    from mtmh.model.train_loop import batch_options

    write_user_sorted_pairs(tmp_path)
    batch = 256
    cfg = build_config(overrides=[f"train.batch_size={batch}", "train.dedup_pairs=false"])
    pairs = write_training_pairs(tmp_path, cfg, HoldoutSplit([]), key="k")
    ds = ray.data.read_parquet(str(pairs.path))
    batches = ds.iter_batches(batch_format="numpy", **batch_options(cfg, epoch=0))
    distinct = [len(np.unique(b["trigger_id"])) for b in batches]  # trigger = user here
    # A uniform sample of 256 of the 12,800 pairs misses a user with p = (1 - 1/256)^256.
    expected = USERS * (1 - (1 - PER_USER / (USERS * PER_USER)) ** batch)
    assert len(distinct) == USERS * PER_USER // batch
    assert np.mean(distinct) > 0.85 * expected, (np.mean(distinct), expected)


def test_held_out_pairs_are_dropped_and_duplicates_counted_once(tmp_path: Path) -> None:
    table = write_user_sorted_pairs(tmp_path, duplicate=True)
    cut = 40
    held = [HoldoutUser(u, np.arange(3), np.arange(3), np.arange(3, 5), cut) for u in (0, 1, 2)]
    assert cut < PER_USER
    split = HoldoutSplit(held)
    cfg = build_config()
    pairs = ensure_training_pairs(tmp_path, cfg, split)
    rows = pq.read_table(pairs.path).to_pandas()
    assert list(rows.columns) == ["trigger_id", "target_id", "count"]
    assert not rows.duplicated(["trigger_id", "target_id"]).any()
    keep = split.training_mask(table["user_id"].to_numpy(), table["target_timestamp"].to_numpy())
    assert rows["count"].sum() == keep.sum() < len(table)
    # The logQ distribution is the deduplicated stream's: 10 targets, one pair each.
    counts = np.exp(pairs.target_log_frequency())
    assert len(counts) == ITEMS
    assert np.allclose(counts[100:110], counts[100]) and counts[100] > 1.5 * counts[0]


def test_the_pairs_are_built_once_and_rebuilt_when_what_shapes_them_changes(
    tmp_path: Path,
) -> None:
    write_user_sorted_pairs(tmp_path)
    split = HoldoutSplit([])
    cfg = build_config()
    first = ensure_training_pairs(tmp_path, cfg, split)
    first_key = first.manifest()["key"]
    built = first.path.stat().st_mtime_ns
    again = ensure_training_pairs(tmp_path, cfg, split)
    assert again.path.stat().st_mtime_ns == built  # current: reused, not rebuilt
    reordered = pq.read_table(again.path)
    assert reordered.num_rows == first.manifest()["rows"]
    other = build_config(overrides=["seed=1"])
    other_pairs = ensure_training_pairs(tmp_path, other, split)
    manifest = json.loads((other_pairs.folder / MANIFEST).read_text())
    assert manifest["key"] != first_key  # another seed: its own pairs, in another order
    assert first.path.stat().st_mtime_ns == built  # the first seed's are still there
    reshuffled = pq.read_table(other_pairs.path)["trigger_id"].to_pylist()
    assert sorted(reshuffled) == sorted(reordered["trigger_id"].to_pylist())
    assert reshuffled != reordered["trigger_id"].to_pylist()


def test_a_window_keeps_only_the_pairs_since_its_start_and_says_what_it_left(
    tmp_path: Path,
) -> None:
    """train.pairs_since (an update's new window): pairs whose target came before it are left
    out, the held-out ones too, and an empty window is an error that says why."""
    table = write_user_sorted_pairs(tmp_path)
    held = [HoldoutUser(u, np.arange(3), np.arange(3), np.arange(3, 5), 45) for u in (0, 1)]
    split = HoldoutSplit(held)
    cfg = build_config(overrides=["train.pairs_since=40", "train.dedup_pairs=false"])
    pairs = ensure_training_pairs(tmp_path, cfg, split)
    when = table["target_timestamp"].to_numpy()
    keep = (when >= 40) & split.training_mask(table["user_id"].to_numpy(), when)
    assert pq.read_table(pairs.path).num_rows == keep.sum() == (USERS - 2) * 10 + 2 * 5
    manifest = pairs.manifest()
    assert manifest["before_window"] == (when < 40).sum()
    assert manifest["held_out"] == 2 * 5  # targets 45..49 of users 0 and 1
    assert manifest["pairs_since"] == 40
    everything = ensure_training_pairs(tmp_path, build_config(), split)
    assert everything.folder != pairs.folder  # the window is part of the key
    late = build_config(overrides=[f"train.pairs_since={PER_USER}"])
    with pytest.raises(ValueError, match=r"no training pair left of 12800 \(12800 before"):
        ensure_training_pairs(tmp_path, late, split)
