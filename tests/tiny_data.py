"""A tiny hand-made dataset in the `parquet:PATH` layout, with planted bad log rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ITEMS = ["a", "b", "c", "d", "e"]
DAY = 86_400
T0 = 1_700_000_000

# (user, item, timestamp, weight): users u1 and u2 span both periods, u3 only T1.
GOOD_ROWS = [
    ("u1", "a", T0, "1"),
    ("u1", "b", T0 + DAY, "1"),
    ("u1", "c", T0 + 2 * DAY, "1"),
    ("u1", "d", T0 + 9 * DAY, "1"),
    ("u2", "b", T0 + DAY, "2"),
    ("u2", "c", T0 + 3 * DAY, "1"),
    ("u2", "e", T0 + 8 * DAY, "1"),
    ("u3", "a", T0 + 2 * DAY, "1"),
    ("u3", "e", T0 + 3 * DAY, "1"),
    ("u3", "a", T0 + 4 * DAY, "1"),  # a re-watch: kept, but not a pair with itself
]

# Bad rows, each with the reason the validator must give it.
BAD_ROWS = [
    (("", "a", str(T0), "1"), "missing_field"),
    (("u1", "a", "", "1"), "missing_field"),
    (("u1", "a", "yesterday", "1"), "unparseable_field"),
    (("u1", "a", str(T0), "lots"), "unparseable_field"),
    (("u1", "zzz", str(T0), "1"), "unknown_item"),
    (("u1", "a", "-5", "1"), "impossible_timestamp"),
    (("u1", "a", "99999999999", "1"), "impossible_timestamp"),
    (("u2", "b", str(T0 + DAY), "2"), "duplicate"),  # exact copy of a good row
]
MALFORMED_LINES = ["u9,a", "u9,a,1,1,extra"]


# Item texts, concepts and (with `with_images`) image files: "a" and "b" get real PNGs, "c" a
# corrupt file, "d" a path that does not exist, "e" no image and an empty text.
TEXTS = ["sourdough bread", "croissant pastry", "offside penalty", "striker goal", ""]
CONCEPTS = ["#baking|#oven", "#baking|#butter", "#football|#referee", "#football|#goal", ""]


def write_tiny_images(folder: Path) -> list[str | None]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        pixels = (rng.random((40, 50, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{name}.png")
    (folder / "c.png").write_text("not an image")
    return [
        str(folder / "a.png"),
        (folder / "b.png").as_uri(),
        str(folder / "c.png"),
        str(folder / "d.png"),
        None,
    ]


def write_tiny_dataset(root: Path, with_bad_rows: bool = True, with_images: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    columns = {
        "item_id": ITEMS,
        "text": TEXTS,
        "concepts": CONCEPTS,
        "topic_l1": ["x", "x", "y", "y|z", ""],
        "dense_score": [0.1, 0.2, 0.3, 0.4, 0.5],
        "cat_kind": [0, 1, 0, 2, 1],
    }
    if with_images:
        columns["image_uri"] = write_tiny_images(root / "images")
    pq.write_table(pa.table(columns), root / "items.parquet")
    lines = ["user_id,item_id,timestamp,weight"]
    lines += [",".join(map(str, r)) for r in GOOD_ROWS]
    if with_bad_rows:
        lines += [",".join(r) for r, _ in BAD_ROWS] + MALFORMED_LINES
    (root / "interactions.csv").write_text("\n".join(lines) + "\n")
    return root


def write_tiny_run(root: Path, n_items: int, n_pairs: int = 512, dim: int = 8) -> Path:
    """A run directory with the files training reads (data/ and content/), no Ray needed.

    Items come in pairs (0,1), (2,3), ...: each pair's trigger and target. The benchmark of
    training reuses it at a larger size."""
    rng = np.random.default_rng(0)
    data, content = root / "data", root / "content"
    (data / "pairs").mkdir(parents=True)
    content.mkdir()
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(range(n_items), pa.int32()),
                "raw_id": pa.array([f"item-{i}" for i in range(n_items)]),
                "dense": pa.array(rng.random((n_items, 2)).tolist(), pa.list_(pa.float32())),
                "categorical": pa.array(
                    rng.integers(0, 3, (n_items, 1)).tolist(), pa.list_(pa.int32())
                ),
                "t1_interactions": pa.array(rng.integers(0, 50, n_items), pa.int64()),
            }
        ),
        data / "items.parquet",
    )
    (data / "item_features.json").write_text(
        json.dumps(
            {
                "dense_names": ["a", "b"],
                "categorical_names": ["c"],
                "categorical_cardinalities": [3],
            }
        )
    )
    trig = rng.integers(0, n_items, n_pairs)
    for part in range(2):
        sl = slice(part * n_pairs // 2, (part + 1) * n_pairs // 2)
        pq.write_table(
            pa.table(
                {
                    "trigger_id": pa.array(trig[sl], pa.int32()),
                    "target_id": pa.array(trig[sl] ^ 1, pa.int32()),
                }
            ),
            data / "pairs" / f"part-{part}.parquet",
        )
    emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim)
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(range(n_items), pa.int32()),
                "embedding": vectors,
                "content_features": vectors,
            }
        ),
        content / "item_embeddings.parquet",
    )
    return root


# A tiny synthetic run for the end-to-end tests (pipeline, sweep): a few hundred items and
# users, trainings of a few steps.
TINY_SYNTHETIC = [
    "data.dataset=synthetic",
    "data.synthetic.num_items=300",
    "data.synthetic.num_users=200",
    "data.synthetic.num_interactions=6000",
    "content.train.epochs=2",
    "train.batch_size=256",
    "train.cpus_per_worker=0.5",
    "preranker.batch_size=128",
    "preranker.epochs=1",
]
