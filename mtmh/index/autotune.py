"""Choosing an index's search setting by measurement, at build time.

The setting that matters for serving is the cheapest one that still finds the exact top-k
often enough. `autotune` measures it instead of assuming it: for each value of the family's
secondary knob (ivf_pq's re-rank factor `k_factor_rf`) it raises the primary one (`nprobe`,
HNSW's `efSearch`) until recall@k against exact search reaches the target, timing every
setting it tries on the same queries. The fastest setting that reached the target wins; if
none did, the most accurate one is kept and `met` says so.

Each result also says what share of the catalog one query of the chosen setting compares with
(`scanned`), estimated from the setting, not timed: the build serves a head exactly when that
share is large (`index.exact_from_scanned`), so two runs of one seed serve the same index.

Recall is measured against exact inner-product search over every item (FAISS flat), on
queries the caller passes: at build time, sampled items' own vectors, which is what the
serving path searches with.

Example:
    tuned = autotune(index, vectors, queries, k=169, target=0.98)
    tuned.params, tuned.recall, tuned.qps / tuned.exact_qps   # "nprobe=8", 0.991, 31.2
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mtmh.index.faiss_index import family_of, ivf_part, set_search_params

log = logging.getLogger(__name__)

RERANK_FACTORS = (1, 2, 4, 8, 16)  # ivf_pq: exact re-rank of k_factor_rf * k PQ candidates


@dataclass(frozen=True)
class OperatingPoint:
    params: str  # FAISS ParameterSpace string, e.g. "nprobe=32,k_factor_rf=4"
    recall: float  # recall@k against exact search
    qps: float  # queries per second, all queries in one batch


@dataclass(frozen=True)
class Tuned:
    family: str
    params: str  # the chosen setting
    recall: float
    qps: float
    exact_qps: float
    k: int
    target: float
    met: bool  # the chosen setting reached the target
    queries: int
    points: list[OperatingPoint] = field(default_factory=list)  # every setting tried
    instead_of: str = ""  # the family measured, when exact search replaced it
    scanned: float = 1.0  # share of the catalog a query of `params` compares with (estimate)

    def scans_at_least(self, share: float) -> bool:
        """An approximate index whose setting compares each query with at least `share` of
        the catalog: on a catalog this small exact search costs about as much, and finds
        everything."""
        return self.family != "exact" and self.scanned >= share

    def as_exact(self) -> Tuned:
        """This measurement, with exact search chosen in place of the tuned index."""
        return replace(
            self,
            family="exact",
            params="",
            recall=1.0,
            qps=self.exact_qps,
            met=True,
            instead_of=self.family,
            scanned=1.0,
        )

    def as_meta(self) -> dict[str, Any]:
        """What the index metadata keeps: the choice and its measurement, not every point."""
        out = asdict(self)
        out.pop("points")
        return out


def _timed(index: Any, queries: np.ndarray, k: int, repeats: int) -> tuple[np.ndarray, float]:
    """(ids [Q, k], best QPS over `repeats` runs)."""
    best, ids = float("inf"), np.empty(0)
    for _ in range(repeats):
        started = time.perf_counter()
        _, ids = index.search(queries, k)
        best = min(best, time.perf_counter() - started)
    return ids, len(queries) / max(best, 1e-9)


def recall_at(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row of `truth` found in the same row of `found` (-1s never match)."""
    k = truth.shape[1]
    hits = sum(
        len(set(t.tolist()) & set(f[f >= 0].tolist())) for t, f in zip(truth, found, strict=True)
    )
    return hits / (k * len(truth))


def scanned_share(family: str, index: Any, num_items: int) -> float:
    """The share of the catalog one query compares with at `index`'s current search setting:
    IVF probes nprobe of nlist lists (ivf_pq's codes as ivf_flat's vectors); HNSW visits about
    efSearch nodes and their layer-0 neighbours (2·M each); exact compares with every item. An
    estimate from the setting alone, the same on every run of one build."""
    import faiss

    if family == "exact":
        return 1.0
    if family == "hnsw":
        inner: Any = faiss.downcast_index(
            index.index if isinstance(index, faiss.IndexIDMap) else index
        )
        hnsw = inner.hnsw
        return min(1.0, hnsw.efSearch * hnsw.nb_neighbors(0) / max(num_items, 1))
    ivf = ivf_part(index)
    if ivf is None:
        raise ValueError(f"a {family} index has no IVF part to read nprobe from")
    return min(1.0, ivf.nprobe / ivf.nlist)


def _primary(family: str, index: Any, k: int) -> tuple[str, list[int]]:
    """The knob that trades speed for recall, with its values, cheapest first."""
    if family == "hnsw":
        return "efSearch", [e for e in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if e >= k // 2]
    ivf = ivf_part(index)
    if ivf is None:
        raise ValueError(f"cannot autotune a {family} index: it has no search knob")
    nlist = ivf.nlist
    values = [1 << i for i in range(nlist.bit_length()) if 1 << i <= nlist]
    return "nprobe", values + ([nlist] if values[-1] != nlist else [])


def _settings(family: str, index: Any, k: int) -> Iterator[list[str]]:
    """Per value of the secondary knob, the primary knob's settings, cheapest first."""
    name, values = _primary(family, index, k)
    secondary = [f",k_factor_rf={f}" for f in RERANK_FACTORS] if family == "ivf_pq" else [""]
    for extra in secondary:
        yield [f"{name}={v}{extra}" for v in values]


def autotune(
    index: Any,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    target: float,
    repeats: int = 2,
) -> Tuned:
    """The fastest search setting of `index` reaching recall@k >= `target` on `queries`
    (against exact search over `vectors`, whose row i is item i), applied to `index`."""
    import faiss

    family = family_of(index)
    vectors = np.ascontiguousarray(vectors, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    k = min(k, len(vectors))
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    truth, exact_qps = _timed(exact, queries, k, repeats)
    if family == "exact":  # nothing to tune: the index is the reference
        found, qps = _timed(index, queries, k, repeats)
        point = OperatingPoint("", recall_at(truth, found), qps)
        return Tuned(
            family, "", point.recall, qps, exact_qps, k, target, True, len(queries), [point]
        )
    points = _sweep(index, family, queries, truth, k, target, repeats)
    reached = [p for p in points if p.recall >= target]
    met = bool(reached)
    best = (
        max(reached, key=lambda p: p.qps) if met else max(points, key=lambda p: (p.recall, p.qps))
    )
    set_search_params(index, best.params)
    if not met:
        log.warning(
            "autotune: no %s setting reached recall@%d %.2f; kept %s (recall %.4f)",
            family,
            k,
            target,
            best.params,
            best.recall,
        )
    scanned = scanned_share(family, index, len(vectors))
    measured = (best.recall, best.qps, exact_qps, k, target, met, len(queries), points)
    return Tuned(family, best.params, *measured, scanned=scanned)


def _sweep(
    index: Any,
    family: str,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    target: float,
    repeats: int,
) -> list[OperatingPoint]:
    """Every setting tried, each line of the secondary knob up to its first that reaches
    `target` (more of the primary knob only costs time on that line)."""
    points: list[OperatingPoint] = []
    for line in _settings(family, index, k):
        for params in line:
            set_search_params(index, params)
            found, qps = _timed(index, queries, k, repeats)
            points.append(OperatingPoint(params, recall_at(truth, found), qps))
            if points[-1].recall >= target:
                break
    return points
