"""Saved per-head indexes: the FAISS file plus metadata that ties it to one model version.

    RUN/indexes/<model>/<head>/index.faiss   the ANN index (CPU form), labels = item ids
    RUN/indexes/<model>/<head>/meta.json     IndexMeta below: what was built, and the search
                                             setting autotune chose with its measured recall

`load_index` checks the metadata against the embeddings it will be used with: an index built
for another model version, head or dimension is an `IndexMismatchError`, because searching it
with the wrong model's query vectors returns plausible-looking garbage.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtmh.config import IndexConfig, config_to_dict
from mtmh.errors import MtmhError
from mtmh.index.autotune import Tuned
from mtmh.index.faiss_index import family_of, ivf_part, set_search_params

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"


class IndexMismatchError(MtmhError, ValueError):
    """An index does not belong to the model (version, head or dim) it is loaded for."""


@dataclass(frozen=True)
class IndexMeta:
    model: str  # embedding source name (variant or "content")
    model_version: str  # EmbeddingSource.version of the embeddings it indexes
    head: str
    dim: int
    num_items: int
    min_item_id: int
    max_item_id: int
    kind: str  # the family: "ivf_flat", "ivf_pq" or "hnsw" ("ivf_flat_ip" before families)
    nlist: int  # 0 for hnsw
    nprobe: int  # the search setting's nprobe (0 for hnsw)
    build_config: dict[str, Any]
    build_seconds: float  # training and adding, not autotune
    built_at: float  # epoch seconds
    # FAISS ParameterSpace string applied on every load ("" = as built), and autotune's record
    # of it (autotune.Tuned.as_meta(): recall@k against exact, QPS, target, met), or None.
    search_params: str = ""
    tuned: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexMeta:
        return cls(**data)


def index_dir(run_dir: Path, model: str, head: str) -> Path:
    return run_dir / "indexes" / model / head


def save_index(index: Any, meta: IndexMeta, folder: Path) -> Path:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees a half-written index next to fresh metadata.
    tmp = folder / (INDEX_FILE + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(folder / INDEX_FILE)
    (folder / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    return folder


def read_meta(folder: Path) -> IndexMeta:
    path = folder / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run ray_jobs/build_indexes.py first")
    return IndexMeta.from_json(json.loads(path.read_text()))


def load_index(folder: Path, model_version: str, head: str, dim: int) -> tuple[Any, IndexMeta]:
    """The index in `folder`, after checking it was built for exactly this model head."""
    import faiss

    meta = read_meta(folder)
    wrong = [
        f"{name} is {got!r}, expected {want!r}"
        for name, got, want in (
            ("model_version", meta.model_version, model_version),
            ("head", meta.head, head),
            ("dim", meta.dim, dim),
        )
        if got != want
    ]
    if wrong:
        raise IndexMismatchError(
            f"index at {folder} does not match the model: {'; '.join(wrong)}. "
            "Rebuild it with ray_jobs/build_indexes.py"
        )
    index = faiss.read_index(str(folder / INDEX_FILE))
    set_search_params(index, meta.search_params)
    return index, meta


def make_meta(
    model: str,
    version: str,
    head: str,
    dim: int,
    item_ids: Any,
    index: Any,
    cfg: IndexConfig,
    seconds: float,
    tuned: Tuned | None = None,
) -> IndexMeta:
    ivf = ivf_part(index)
    return IndexMeta(
        model=model,
        model_version=version,
        head=head,
        dim=int(dim),
        num_items=len(item_ids),
        min_item_id=int(item_ids.min()),
        max_item_id=int(item_ids.max()),
        kind=family_of(index),
        nlist=int(ivf.nlist) if ivf is not None else 0,
        nprobe=int(ivf.nprobe) if ivf is not None else 0,
        build_config=config_to_dict(cfg),
        build_seconds=round(seconds, 3),
        built_at=time.time(),
        search_params=tuned.params if tuned else "",
        tuned=tuned.as_meta() if tuned else None,
    )
