"""A trained preranker as the serving path uses it: the model, the heads it reads (in feature
order) and the item statistics it was trained with, saved per model under RUN/preranker/.

    RUN/preranker/item_stats.npz        popularity and age at the end of the training log
    RUN/preranker/<model>/model.pt      the PrerankerModel's state dict
    RUN/preranker/<model>/meta.json     heads, feature names, sizes, the training summary

Example:
    pre = load_preranker(run_dir, "mtmh")
    probs = pre.score(searched, triggers, blocked)   # {head: [T, K] probabilities, -inf invalid}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtmh.preranker.features import candidate_features, feature_names
from mtmh.preranker.item_stats import STATS_FILE, ItemStats
from mtmh.preranker.model import PrerankerModel
from mtmh.retrieval.heads import Searched

MODEL_FILE = "model.pt"
META_FILE = "meta.json"


def preranker_dir(run_dir: Path, model: str | None = None) -> Path:
    """RUN/preranker/, or one model's folder in it."""
    root = run_dir / "preranker"
    return root if model is None else root / model


@dataclass
class Preranker:
    model: PrerankerModel
    heads: tuple[str, ...]  # the heads whose lists it reads, in feature order
    stats: ItemStats

    @property
    def num_items(self) -> int:
        return len(self.stats.counts)

    @torch.no_grad()
    def score_many(
        self,
        requests: Sequence[tuple[Searched, np.ndarray, np.ndarray]],
        reaches: Sequence[Mapping[str, int | None]] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Per (searched, triggers, blocked): {head: [T, K] probabilities, -inf where the
        candidate may not be returned or lies beyond the request's reach for the head
        (`preranker_reach`; None: whole lists)}. All requests' rows go through one forward
        pass."""
        reaches = reaches if reaches is not None else [{}] * len(requests)
        rows = [
            candidate_features(s, self.heads, t, b, self.stats, reach)
            for (s, t, b), reach in zip(requests, reaches, strict=True)
        ]
        blocks = [r[h].features for r in rows for h in self.heads]
        x = torch.as_tensor(np.concatenate(blocks)) if blocks else torch.zeros(0)
        probs = self.model.probability(x).numpy().astype(np.float64) if len(x) else np.zeros(0)
        out: list[dict[str, np.ndarray]] = []
        start = 0
        for (searched, _, _), user_rows in zip(requests, rows, strict=True):
            scores = {}
            for h in self.heads:
                r = user_rows[h]
                full = np.full(searched[h].ids.shape, -np.inf)
                full[r.trigger_pos, r.column] = probs[start : start + len(r.items)]
                start += len(r.items)
                scores[h] = full
            out.append(scores)
        return out

    def score(
        self,
        searched: Searched,
        triggers: np.ndarray,
        blocked: np.ndarray,
        reach: Mapping[str, int | None] | None = None,
    ) -> dict[str, np.ndarray]:
        return self.score_many([(searched, triggers, blocked)], [reach or {}])[0]


def save_preranker(run_dir: Path, source: str, pre: Preranker, summary: dict[str, Any]) -> None:
    folder = preranker_dir(run_dir, source)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(pre.model.state_dict(), folder / MODEL_FILE)
    meta = {
        "model": source,
        "heads": list(pre.heads),
        "features": feature_names(pre.heads),
        "num_features": pre.model.num_features,
        "hidden_dim": pre.model.hidden_dim,
        "satisfaction_weight": pre.model.satisfaction_weight,
        **summary,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def load_preranker(run_dir: Path, source: str) -> Preranker:
    """The trained preranker of one model of a run, in eval mode on the CPU."""
    folder = preranker_dir(run_dir, source)
    weights, stats = folder / MODEL_FILE, preranker_dir(run_dir) / STATS_FILE
    for path in (weights, stats):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run ray_jobs/train_preranker.py first")
    meta = json.loads((folder / META_FILE).read_text())
    model = PrerankerModel(meta["num_features"], meta["hidden_dim"], meta["satisfaction_weight"])
    model.load_state_dict(torch.load(weights, weights_only=True))
    return Preranker(model.eval(), tuple(meta["heads"]), ItemStats.load(stats))


def preranker_digest(run_dir: Path, source: str) -> str:
    """A short hash of what the preranker of `source` scores with (weights and item stats)."""
    digest = hashlib.sha256()
    for path in (preranker_dir(run_dir, source) / MODEL_FILE, preranker_dir(run_dir) / STATS_FILE):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]
