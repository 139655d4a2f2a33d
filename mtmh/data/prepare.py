"""`prepare`: raw dataset -> validated, split, paired tables under RUN/data (see schema.py).

The pipeline, on Ray Data, streaming end to end (the driver never holds the log):

    read logs (csv/tsv/parquet) --map_batches(LogValidator)--> BucketSink: parquet per user
        bucket (bucket=-1: quarantined rows), plus hourly histograms   [driver: time cut]
    buckets --map(count_bucket_users)--> users per bucket             [driver: id offsets]
    buckets --map(finish_bucket)--> users/, t1/, t2/, pairs/, duplicates, item counts

Only per-bucket summaries and per-item counts come back to the driver; the item catalog is the
one table held in full (it is small next to the log).

Example:
    cfg = load_config(overrides=["data.dataset=ml-100k"])
    stats = prepare(cfg, Path("runs/ml-100k"))
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtmh.config import RunConfig, config_hash, save_config
from mtmh.data.buckets import count_bucket_users, finish_bucket
from mtmh.data.fetch import default_data_dir
from mtmh.data.schema import ITEMS, QUARANTINE, QUARANTINE_REASONS
from mtmh.data.sources import SchemaError, SourceData, get_source
from mtmh.data.sources.base import LogFiles
from mtmh.data.split import time_cut
from mtmh.data.validate import LogValidator, check_log_schema, csv_read_options

if TYPE_CHECKING:  # the sink is a Ray Data Datasink, imported where it runs
    from mtmh.data.bucket_sink import BucketSink

log = logging.getLogger(__name__)

# An interaction row in a text log is ~20-40 bytes; used only to size the bucket count.
_TEXT_BYTES_PER_ROW = 24
# ITEMS columns that come straight from the source catalog (the rest prepare computes).
RAW_ITEM_COLUMNS = ITEMS.names[: ITEMS.names.index("available_from") + 1]
INT64_MIN = np.iinfo(np.int64).min


def estimate_rows(logs: LogFiles) -> int:
    """Rows in the logs: exact for parquet (footers), estimated from size for text."""
    if logs.format == "parquet":
        return sum(pq.ParquetFile(p).metadata.num_rows for p in logs.paths)
    return sum(p.stat().st_size for p in logs.paths) // _TEXT_BYTES_PER_ROW + 1


def choose_num_buckets(
    rows: int, rows_per_bucket: int, max_buckets: int, min_buckets: int = 4
) -> int:
    return int(min(max(math.ceil(rows / rows_per_bucket), min_buckets), max_buckets))


def assign_item_ids(items: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Contiguous item ids in catalog order; rows with no id or a repeated id are quarantined
    (the first row of an id is kept; later ones are set aside whole, whatever they say, and
    counted as duplicate_item_id)."""
    raw = items["raw_id"]
    missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(raw), ""), True)
    seen: set[str] = set()
    repeated = []
    for value in raw.to_pylist():
        repeated.append(value in seen)
        if value is not None:
            seen.add(value)
    bad_missing = np.asarray(missing, dtype=bool)
    bad = bad_missing | np.asarray(repeated, dtype=bool)
    rejected = items.filter(pa.array(bad))
    quarantine = pa.table(
        {
            "reason": ["missing_field" if m else "duplicate_item_id" for m in bad_missing[bad]],
            "detail": [
                "item table: raw_id is empty" if m else "item table: raw_id repeats an earlier item"
                for m in bad_missing[bad]
            ],
            "source": ["items"] * len(rejected),
            "raw": [json.dumps(r, default=str) for r in rejected.to_pylist()],
        },
        schema=QUARANTINE,
    )
    kept = items.filter(pa.array(~bad))
    return kept.add_column(0, "item_id", pa.array(np.arange(kept.num_rows), pa.int32())), quarantine


def _read_logs(logs: LogFiles, malformed_dir: Path) -> Any:
    import ray

    if logs.format == "parquet":
        return ray.data.read_parquet([str(p) for p in logs.paths], include_paths=True)
    # One read per text file, so each malformed line is kept with the file it came from.
    parts = [
        ray.data.read_csv(
            str(p), include_paths=True, **csv_read_options(logs, str(malformed_dir), p)
        )
        for p in logs.paths
    ]
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _validate_and_bucket(
    cfg: RunConfig, source: SourceData, items: pa.Table, work: Path, num_buckets: int
) -> BucketSink:
    """Stage 1: stream the logs through the validator into user-bucket folders."""
    val = cfg.data.row_bounds
    validator = LogValidator(
        item_raw_ids=items["raw_id"].combine_chunks(),
        item_available_from=items["available_from"].fill_null(INT64_MIN).to_numpy(),
        min_timestamp=val.min_timestamp,
        max_timestamp=val.max_timestamp or int(time.time()) + val.max_future_seconds,
        num_buckets=num_buckets,
        column_map=source.logs.column_map,
    )
    # Plain tasks, not an actor pool: measured on 10M rows (bench/prepare_bench.py), actor
    # start-up cost more than shipping the catalog with each task (it is small beside a block).
    ds = _read_logs(source.logs, work / "malformed").map_batches(
        validator,
        batch_format="pyarrow",
        batch_size=None,  # one read block per call: few, large output files per bucket
        num_cpus=cfg.ray.data_task_cpus,
    )
    from mtmh.data.bucket_sink import BucketSink

    sink = BucketSink(str(work / "validated"))
    ds.write_datasink(sink)
    return sink


def _per_bucket(
    cfg: RunConfig, rows: list[dict[str, Any]], fn: Any, **kwargs: Any
) -> list[dict[str, Any]]:
    import ray

    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    return ds.map(fn, fn_kwargs=kwargs, num_cpus=cfg.ray.data_task_cpus).take_all()


def _fold_item_stats(items: pa.Table, stats_dir: Path) -> pa.Table:
    n = items.num_rows
    total = np.zeros(n, np.int64)
    t1 = np.zeros(n, np.int64)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    for part in sorted(stats_dir.glob("*.parquet")):
        t = pq.read_table(part)
        ids = t["item_id"].to_numpy()
        np.add.at(total, ids, t["interactions"].to_numpy())
        np.add.at(t1, ids, t["t1_interactions"].to_numpy())
        np.minimum.at(first, ids, t["first_seen"].to_numpy())
    available = items["available_from"]
    seen = pa.array(first, pa.int64(), mask=first == np.iinfo(np.int64).max)
    return pa.Table.from_arrays(
        [
            *(items[name] for name in RAW_ITEM_COLUMNS),
            pc.coalesce(available, seen),
            pa.array(total),
            pa.array(t1),
        ],
        schema=ITEMS,
    )


def _collect_quarantine(work: Path, data_dir: Path, item_quarantine: pa.Table) -> Counter[str]:
    """Move every rejected row into RUN/data/quarantine/ and count them by reason.

    Rows rejected by the validator are moved as the files the sink wrote (never read whole by
    the driver, however many there are); counting reads one file's `reason` column at a time.
    """
    qdir = data_dir / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    if (work / "validated" / "bucket=-1").exists():
        shutil.move(work / "validated" / "bucket=-1", qdir / "validation")
    if item_quarantine.num_rows:
        pq.write_table(item_quarantine, qdir / "items.parquet")
    malformed_files = sorted((work / "malformed").glob("*.jsonl"))
    if malformed_files:  # one line per malformed log line: few by nature
        rows = [json.loads(line) for f in malformed_files for line in f.read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE), qdir / "malformed.parquet")
    counts: Counter[str] = Counter()
    for part in sorted(qdir.rglob("*.parquet")):
        counts.update(pq.read_table(part, columns=["reason"])["reason"].to_pylist())
    return counts


def prepare(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Prepare `cfg.data.dataset` into `run_dir/data`; returns (and writes) stats.json. Runs
    on the Ray the calling job started."""
    started = time.time()
    data_dir = Path(run_dir) / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a partial earlier run must not mix with this one
    work = data_dir / "_work"
    work.mkdir(parents=True)
    cache = Path(cfg.data.data_dir) if cfg.data.data_dir else default_data_dir()
    source = get_source(cfg.data).load(cache)
    check_log_schema(source.logs)
    items, item_quarantine = assign_item_ids(source.items)
    rows_estimate = estimate_rows(source.logs)
    num_buckets = choose_num_buckets(rows_estimate, cfg.data.rows_per_bucket, cfg.data.max_buckets)
    log.info(
        "%s: %d catalog items, ~%d log rows, %d user buckets",
        source.description,
        items.num_rows,
        rows_estimate,
        num_buckets,
    )
    stage = time.time()
    sink = _validate_and_bucket(cfg, source, items, work, num_buckets)
    log.info("stage 1/3 validate + bucket: %.1f s", time.time() - stage)
    if int(sink.counts.sum()) == 0:  # no valid row: nothing to split or learn from
        quarantined = _collect_quarantine(work, data_dir, item_quarantine)
        set_aside = ", ".join(f"{k}={v:,}" for k, v in sorted(quarantined.items())) or "none"
        raise SchemaError(
            f"{source.description}: no valid interactions in {len(source.logs.paths)} log "
            f"file(s) (rows set aside: {set_aside}; see {data_dir / 'quarantine'})"
        )
    cut = time_cut(cfg.data.split, sink.hours, sink.counts)
    finished = _split_buckets(cfg, work / "validated", data_dir, num_buckets, cut)
    items_out = _fold_item_stats(items, work / "item_stats")
    pq.write_table(items_out, data_dir / "items.parquet")
    quarantined = _collect_quarantine(work, data_dir, item_quarantine)
    (data_dir / "item_features.json").write_text(json.dumps(source.features.to_json(), indent=2))
    stats = _stats(cfg, source.description, sink.rows, finished, items_out, quarantined)
    stats.update(cut_timestamp=cut, buckets=num_buckets)
    log_quarantine = sum(stats["quarantined"].values()) - item_quarantine.num_rows
    if stats["rows_read"] != stats["interactions"] + log_quarantine:
        raise RuntimeError(
            f"row accounting broke: read {stats['rows_read']}, kept {stats['interactions']}, "
            f"quarantined {log_quarantine}"
        )
    shutil.rmtree(work)
    stats["seconds"] = round(time.time() - started, 2)
    (data_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    save_config(cfg, data_dir / "config.yaml")
    return stats


def _split_buckets(
    cfg: RunConfig, validated: Path, data_dir: Path, num_buckets: int, cut: int
) -> list[dict[str, Any]]:
    """Stages 2 and 3, one Ray task per user bucket: count each bucket's users (their ids
    are numbered across buckets in bucket order), then split, pair and write each bucket."""
    stage = time.time()
    buckets = [{"bucket": b} for b in range(num_buckets)]
    users = _per_bucket(cfg, buckets, count_bucket_users, validated_dir=str(validated))
    users.sort(key=lambda r: r["bucket"])
    offsets = np.concatenate([[0], np.cumsum([r["users"] for r in users])[:-1]])
    log.info("stage 2/3 count users per bucket: %.1f s", time.time() - stage)
    stage = time.time()
    finish_rows = [
        {"bucket": r["bucket"], "user_offset": int(o)} for r, o in zip(users, offsets, strict=True)
    ]
    finished = _per_bucket(
        cfg,
        finish_rows,
        finish_bucket,
        validated_dir=str(validated),
        out_dir=str(data_dir),
        cut=cut,
        window=cfg.data.pairs.window,
    )
    log.info("stage 3/3 finish buckets (split, pairs, writes): %.1f s", time.time() - stage)
    return finished


def _stats(
    cfg: RunConfig,
    description: str,
    rows_valid: int,
    finished: list[dict[str, Any]],
    items: pa.Table,
    quarantined: Counter[str],
) -> dict[str, Any]:
    """stats.json's counts: the buckets' totals, the catalog's and the quarantine's."""

    def total(key: str) -> int:
        return int(sum(r[key] for r in finished))

    labelled = pc.sum(pc.greater(pc.list_value_length(items["topic_l2"]), 0)).as_py()
    return {
        "dataset": cfg.data.dataset,
        "source": description,
        "rows_read": rows_valid + quarantined.get("malformed_row", 0),
        "interactions": total("interactions"),
        "users": total("users"),
        "items": int(pc.sum(pc.greater(items["interactions"], 0)).as_py() or 0),
        "catalog_items": items.num_rows,
        "pairs": total("pairs"),
        "t1_interactions": total("t1_interactions"),
        "t2_interactions": total("t2_interactions"),
        "eval_users": total("eval_users"),
        "items_with_l2_label": int(labelled or 0),
        "quarantined": {r: int(quarantined.get(r, 0)) for r in QUARANTINE_REASONS},
        "window": cfg.data.pairs.window,
        "config_hash": config_hash(cfg.data),
    }
