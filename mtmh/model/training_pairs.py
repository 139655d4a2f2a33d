"""The pairs every training of a run learns from, made once per run and shared by all of them.

RUN/data/pairs holds every (trigger, target) co-engagement pair of T1, written user by user.
What trains is derived from it:

1. the validation users' held-out pairs (target at or after the user's cut) are removed,
   and with `train.pairs_since` (an update's new window) every pair whose target came before;
2. with `train.dedup_pairs`, each distinct (trigger, target) pair appears once, with its number
   of occurrences in a "count" column;
3. with `train.shuffle`, the rows are put in one seeded random order (the pair files are
   written user by user; without it a batch would hold dozens of rows of one user).

The result goes to RUN/training_pairs/<key>/pairs.parquet, with the in-batch target
distribution the logQ correction needs (`target_log_frequency.npy`: the log of each item's
share of the rows' targets, smoothed by one) and a manifest. The key hashes everything the
pairs depend on, so trainings with other settings (a sweep's seeds) each get their own folder
side by side. Every variant and the standalone train job read the same files: the work is
done once per run, not once per training, and the logQ correction has one source.

The pairs are built in one process with pyarrow (about 24 bytes per pair of T1 at the peak:
180 MB for ml-1m's 7.4M pairs), which takes seconds where a Ray Data groupby and shuffle took
minutes per training on two cores. Writers are atomic (a temporary file, then a rename), so
two trainings that start together at worst build the same files twice.

Example:
    pairs = ensure_training_pairs(run_dir, cfg)        # builds when missing
    ds = ray.data.read_parquet(str(pairs.path))        # trigger_id, target_id[, count]
    log_q = pairs.target_log_frequency()               # [N]
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtmh.atomic_file import write_atomically
from mtmh.config import RunConfig, config_to_dict
from mtmh.holdout import HoldoutSplit, load_holdout

log = logging.getLogger(__name__)
FOLDER = "training_pairs"
PAIRS_FILE = "pairs.parquet"
LOG_FREQUENCY_FILE = "target_log_frequency.npy"
MANIFEST = "manifest.json"
TIME_COLUMNS = ["user_id", "target_timestamp"]  # what the held-out and window cuts read


@dataclass(frozen=True)
class TrainingPairs:
    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / PAIRS_FILE

    def target_log_frequency(self) -> np.ndarray:
        """[N] log of each item's share of the training targets: the logQ correction's input."""
        path = self.folder / LOG_FREQUENCY_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the training pairs were not built (ensure_training_pairs)"
            )
        return np.load(path)

    def manifest(self) -> dict[str, object]:
        path = self.folder / MANIFEST
        return json.loads(path.read_text()) if path.is_file() else {}


def training_pairs_key(run_dir: Path, cfg: RunConfig) -> str:
    """A hash of what the pairs depend on: the prepared data, the holdout split, and the
    train settings that shape the rows."""
    source = run_dir / "data" / "pairs"
    if not source.is_dir():
        raise FileNotFoundError(f"{source} not found: run ray_jobs/prepare_data.py first")
    # The pair files as written (a new prepare writes new ones), without reading them.
    files = sorted(
        (str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in source.rglob("*")
        if p.is_file()
    )
    tc = cfg.train
    parts = [
        files,
        config_to_dict(cfg.holdout),
        cfg.eval.max_triggers,
        tc.dedup_pairs,
        tc.shuffle,
        tc.pairs_since,
        cfg.seed,
    ]
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_pairs(run_dir: Path, cfg: RunConfig) -> TrainingPairs:
    """Where the training pairs of `cfg` live (built or not)."""
    return TrainingPairs(run_dir / FOLDER / training_pairs_key(run_dir, cfg))


def ensure_training_pairs(
    run_dir: Path, cfg: RunConfig, split: HoldoutSplit | None = None
) -> TrainingPairs:
    """The training pairs of `cfg`, built when missing."""
    pairs = training_pairs(run_dir, cfg)
    key = pairs.folder.name
    if pairs.manifest().get("key") == key and pairs.path.is_file():
        return pairs
    if split is None:
        split = load_holdout(run_dir, cfg.holdout, cfg.eval.max_triggers)
    return write_training_pairs(run_dir, cfg, split, key)


def write_training_pairs(
    run_dir: Path, cfg: RunConfig, split: HoldoutSplit, key: str
) -> TrainingPairs:
    source = run_dir / "data" / "pairs"
    started = time.perf_counter()
    tc = cfg.train
    timed = bool(split) or tc.pairs_since is not None  # only then are the times read
    table = pq.read_table(
        source, columns=["trigger_id", "target_id", *(TIME_COLUMNS if timed else [])]
    )
    read = table.num_rows
    before_window, held = np.zeros(read, bool), np.zeros(read, bool)
    if timed:
        when = table["target_timestamp"].to_numpy().astype(np.int64)
        if tc.pairs_since is not None:
            before_window = when < tc.pairs_since
        if split:
            held = ~split.training_mask(table["user_id"].to_numpy(), when) & ~before_window
    table = table.select(["trigger_id", "target_id"]).filter(pa.array(~(held | before_window)))
    if table.num_rows == 0:
        raise ValueError(
            f"{source}: no training pair left of {read} ({int(before_window.sum())} before "
            f"train.pairs_since={tc.pairs_since}, {int(held.sum())} held out for validation)"
        )
    if tc.dedup_pairs:
        table = deduplicate(table)
    if tc.shuffle:
        table = table.take(np.random.default_rng(cfg.seed).permutation(table.num_rows))
    num_items = pq.read_metadata(run_dir / "data" / "items.parquet").num_rows
    folder = run_dir / FOLDER / key
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(
        folder / PAIRS_FILE, lambda p: pq.write_table(table, p, row_group_size=1 << 17)
    )
    frequency = target_log_frequency(table["target_id"].to_numpy(), num_items)
    write_atomically(folder / LOG_FREQUENCY_FILE, lambda p: np.save(p, frequency))
    manifest = {
        "key": key,
        "pairs_read": read,
        "held_out": int(held.sum()),
        "pairs_since": tc.pairs_since,
        "before_window": int(before_window.sum()),
        "rows": table.num_rows,
        "deduplicated": tc.dedup_pairs,
        "shuffled": tc.shuffle,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_atomically(folder / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2)))
    log.info(
        "training pairs: %d rows from %d pairs in %.1f s", table.num_rows, read, manifest["seconds"]
    )
    return TrainingPairs(folder)


def deduplicate(table: pa.Table) -> pa.Table:
    """Distinct (trigger_id, target_id) rows with their occurrences in "count", sorted by pair
    (a stable order, so the seeded shuffle that follows is reproducible)."""
    counted = table.group_by(["trigger_id", "target_id"], use_threads=False).aggregate(
        [([], "count_all")]
    )
    counted = counted.rename_columns(["trigger_id", "target_id", "count"])
    return counted.sort_by([("trigger_id", "ascending"), ("target_id", "ascending")])


def target_log_frequency(targets: np.ndarray, num_items: int) -> np.ndarray:
    """[N] log of each item's share of `targets`, smoothed by one."""
    counts = np.ones(num_items, np.float64)
    counts += np.bincount(targets, minlength=num_items)[:num_items]
    return np.log(counts / counts.sum()).astype(np.float32)
