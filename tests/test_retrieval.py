"""Indexes, the quota merge, the metrics and the in-process serving path, on hand-made data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mtmh.config import IndexConfig, build_config
from mtmh.eval.metrics import MatchCounter, RecallMean, recall_at
from mtmh.index.artifact import IndexMismatchError, load_index, make_meta, save_index
from mtmh.index.faiss_index import AnnIndexError, build_exact, build_ivf, default_nlist, search
from mtmh.retrieval.merge import (
    POOLING,
    Candidate,
    engagement_quota,
    pool,
    pool_candidates,
    quota_merge,
)
from mtmh.retrieval.ranking import blocked_items, rank_candidates, rank_rows, score_order
from tests.tiny_data import write_tiny_run


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres: the structure real item embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_search_finds_most_of_the_exact_top_k() -> None:
    x = clustered(20_000, 32, 64, seed=0)
    ids = np.arange(len(x)) + 1_000  # labels are item ids, not row positions
    cfg = IndexConfig(nlist=128, nprobe=16)
    ivf = build_ivf(x, ids, cfg)
    exact = build_exact(x, ids)
    q = x[:300]
    _, truth = search(exact, q, 50)
    _, found = search(ivf, q, 50)
    recall = np.mean([len(set(t) & set(f)) / 50 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9, recall
    assert truth.min() >= 1_000
    # More probes never hurt: all lists probed is exact.
    _, all_lists = search(ivf, q, 50, nprobe=128)
    assert np.mean([len(set(t) & set(f)) / 50 for t, f in zip(truth, all_lists, strict=True)]) == 1


def test_nlist_default_keeps_enough_points_per_list() -> None:
    cfg = IndexConfig()
    assert default_nlist(1_682, cfg) == 1_682 // 39
    assert default_nlist(1_000_000, cfg) == 4_000
    assert default_nlist(10, cfg) == 1


def test_gpu_request_without_faiss_gpu_is_an_error() -> None:
    x = clustered(500, 8, 4, seed=1)
    with pytest.raises(AnnIndexError, match="faiss-gpu"):
        build_ivf(x, np.arange(500), IndexConfig(use_gpu=True))


def test_saved_index_loads_only_for_its_model_version_head_and_dim(tmp_path: Path) -> None:
    x = clustered(2_000, 16, 8, seed=2)
    ids = np.arange(2_000)
    cfg = IndexConfig(nprobe=4)
    index = build_ivf(x, ids, cfg)
    save_index(
        index, make_meta("mtmh", "mtmh-aaa", "relevance", 16, ids, index, cfg, 0.1), tmp_path
    )
    loaded, meta = load_index(tmp_path, "mtmh-aaa", "relevance", 16)
    assert meta.nlist == index.nlist and meta.num_items == 2_000
    np.testing.assert_array_equal(search(loaded, x[:5], 3)[1], search(index, x[:5], 3)[1])
    with pytest.raises(IndexMismatchError, match="model_version is 'mtmh-aaa'"):
        load_index(tmp_path, "mtmh-bbb", "relevance", 16)
    with pytest.raises(IndexMismatchError, match="head"):
        load_index(tmp_path, "mtmh-aaa", "engagement", 16)
    with pytest.raises(IndexMismatchError, match="dim"):
        load_index(tmp_path, "mtmh-aaa", "relevance", 32)


ENG = [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)]
REL = [(3, 7.0), (5, 5.0), (6, 4.0), (1, 9.0)]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (0, [(3, "relevance"), (5, "relevance"), (6, "relevance"), (1, "relevance")]),
        (50, [(1, "engagement"), (2, "engagement"), (3, "relevance"), (5, "relevance")]),
        (100, [(1, "engagement"), (2, "engagement"), (3, "engagement"), (4, "engagement")]),
    ],
)
def test_quota_merge_takes_alpha_percent_from_engagement(
    alpha: float, expected: list[tuple[int, str]]
) -> None:
    out = quota_merge(ENG, REL, k=4, alpha=alpha)
    assert [(c.item_id, c.head) for c in out] == expected
    assert len({c.item_id for c in out}) == 4  # no duplicates
    assert out == quota_merge(list(ENG), list(REL), k=4, alpha=alpha)  # deterministic


def test_quota_merge_drops_duplicates_and_fills_from_the_other_head() -> None:
    # Relevance repeats engagement's picks: it must reach past them for unique items.
    out = quota_merge(ENG, [(1, 9.0), (2, 8.0), (7, 1.0)], k=4, alpha=50)
    assert [c.item_id for c in out] == [1, 2, 7, 3]  # relevance ran out; engagement fills
    # Fewer unique items than K: all of them, once each.
    assert [c.item_id for c in quota_merge([(1, 1.0)], [(1, 1.0), (2, 0.5)], 5, 50)] == [1, 2]
    assert quota_merge([], [], 3, 50) == []


def test_engagement_quota_rounds_half_up_and_rejects_bad_alpha() -> None:
    assert [engagement_quota(30, a) for a in (0, 30, 50, 70, 100)] == [0, 9, 15, 21, 30]
    assert engagement_quota(5, 50) == 3
    with pytest.raises(ValueError, match="alpha"):
        engagement_quota(10, 101)


def test_recall_and_topic_match_on_hand_computed_cases() -> None:
    assert recall_at([4, 9, 1, 7], {1, 2}, (1, 3, 4)) == {1: 0.0, 3: 0.5, 4: 0.5}
    mean = RecallMean((2,))
    mean.add([1, 2, 3], {1, 2})  # 1.0
    mean.add([5, 6, 1], {1})  # 0.0
    assert mean.means() == {2: 0.5}
    assert mean.standard_errors()[2] == pytest.approx(0.5)  # sample sd 0.707 / sqrt(2)
    labels = [frozenset({"a"}), frozenset({"a", "b"}), frozenset({"c"}), frozenset()]
    m = MatchCounter(labels)
    m.add(0, [1, 2, 3])  # (0,1) match, (0,2) no, (0,3) unlabelled: skipped
    m.add(3, [0, 1])  # unlabelled trigger: skipped
    m.add(1, [2])  # no
    assert (m.hits, m.total) == (1, 3)
    with pytest.raises(ValueError, match="no T2 items"):
        recall_at([1], set(), (1,))


def test_rank_rows_breaks_ties_by_item_id_and_skips_invalid() -> None:
    items = np.array([[7, 3, 5, 9]])
    scores = np.array([[1.0, 2.0, 2.0, -np.inf]])
    assert rank_rows(items, scores, keep=3) == [[(3, 2.0), (5, 2.0), (7, 1.0)]]


def test_rank_rows_matches_a_row_by_row_loop() -> None:
    """The vectorised cut against the plain loop it replaced: ties, -inf, NaN, short rows."""

    def plain(items: np.ndarray, scores: np.ndarray, keep: int) -> list[list[tuple[int, float]]]:
        out = []
        for row_items, row_scores in zip(items, scores, strict=True):
            ranked: list[tuple[int, float]] = []
            for j in np.lexsort((row_items, -row_scores)):
                if not np.isfinite(row_scores[j]) or len(ranked) == keep:
                    break
                ranked.append((int(row_items[j]), float(row_scores[j])))
            out.append(ranked)
        return out

    rng = np.random.default_rng(0)
    items = rng.integers(0, 50, (40, 25))
    scores = rng.integers(0, 6, (40, 25)).astype(float)  # many ties
    scores[rng.random((40, 25)) < 0.3] = -np.inf
    scores[3] = -np.inf  # a row with nothing valid
    scores[5, 0] = np.nan
    for keep in (1, 7, 25, 30):
        assert rank_rows(items, scores, keep) == plain(items, scores, keep)


def test_score_order_matches_a_row_by_row_loop() -> None:
    rng = np.random.default_rng(1)
    cands = rng.integers(0, 50, (30, 20))
    scores = rng.integers(0, 5, (30, 20)).astype(np.float32)  # many ties
    valid = rng.random((30, 20)) < 0.6
    valid[4] = False  # a row with nothing valid
    for (ids, s), row_ids, row_s, ok in zip(
        score_order(cands, scores, valid), cands, scores, valid, strict=True
    ):
        want_ids, want_s = row_ids[ok].astype(np.int64), row_s[ok].astype(np.float64)
        order = np.lexsort((want_ids, -want_s))
        np.testing.assert_array_equal(ids, want_ids[order])
        np.testing.assert_array_equal(s, want_s[order])


def test_rank_candidates_never_returns_the_trigger_seen_items_or_faiss_padding() -> None:
    # faiss pads a short result row with -1; it once slipped through as an "item".
    cands = np.array([[4, 7, -1, 2, 5], [7, 1, 3, -1, -1]])
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0], [9.0, 8.0, 7.0, 6.0, 5.0]])
    blocked = blocked_items(num_items=8, seen=[2])
    ranked = rank_candidates(cands, scores, np.array([4, 1]), blocked, keep=10)
    assert ranked == [[(7, 8.0), (5, 5.0)], [(7, 9.0), (3, 7.0)]]


def test_pool_dedups_across_triggers_by_score() -> None:
    rows = [
        [Candidate(1, 0.5, "engagement"), Candidate(2, 0.9, "relevance")],
        [Candidate(2, 0.9, "engagement"), Candidate(3, 0.5, "relevance")],
    ]
    assert pool(rows, top_k=10) == [(2, 0.9), (1, 0.5), (3, 0.5)]
    assert pool(rows, top_k=1) == [(2, 0.9)]
    # An item keeps the head of its first best-scoring candidate.
    assert [c.head for c in pool_candidates(rows, top_k=10)] == [
        "relevance",
        "engagement",
        "relevance",
    ]


def test_nprobe_is_raised_until_the_probed_lists_can_hold_k_ann() -> None:
    from mtmh.retrieval.heads import cover_k_ann

    x = clustered(4_000, 16, 32, seed=3)
    index = build_ivf(x, np.arange(4_000), IndexConfig(nlist=100, nprobe=4))
    cover_k_ann(index, k_ann=40, num_items=4_000)
    assert index.nprobe == 4  # 4 lists hold ~160 items >= 2 * 40
    cover_k_ann(index, k_ann=400, num_items=4_000)
    assert index.nprobe == 20  # 2 * 400 items need ~20 of 100 lists
    _, found = search(index, x[:10], 400)
    assert (found >= 0).all()


def test_sum_pooling_adds_an_items_scores_over_triggers() -> None:
    per_trigger = [
        [Candidate(1, 0.9, "engagement"), Candidate(2, 0.5, "relevance")],
        [Candidate(2, 0.6, "engagement"), Candidate(3, 0.8, "engagement")],
    ]
    # "max": item 1 (0.9) leads; "sum": item 2 (0.5 + 0.6) leads, with its best head.
    assert [c.item_id for c in pool_candidates(per_trigger, 3)] == [1, 3, 2]
    summed = pool_candidates(per_trigger, 3, how="sum")
    assert [(c.item_id, round(c.score, 6), c.head) for c in summed] == [
        (2, 1.1, "engagement"),
        (1, 0.9, "engagement"),
        (3, 0.8, "engagement"),
    ]


def test_ann_order_ranks_the_searched_candidates_by_similarity() -> None:
    from mtmh.preranker.features import feature_names
    from mtmh.preranker.item_stats import ItemStats
    from mtmh.preranker.model import PrerankerModel
    from mtmh.preranker.ranker import Preranker
    from mtmh.retrieval.heads import HeadIndex, NeighborHead
    from mtmh.retrieval.retriever import Retriever

    x = clustered(400, 16, 8, seed=3)
    exact = build_exact(x, np.arange(len(x)))
    heads = {"engagement": HeadIndex("m", "engagement", "v", x, exact)}
    stats = ItemStats(np.arange(len(x)) % 7, np.zeros(len(x), np.float32))
    model = PrerankerModel(len(feature_names(("engagement",))), hidden_dim=8)
    ret = Retriever(heads, 50, 10, Preranker(model, ("engagement",), stats))
    triggers = np.array([5, 17])
    seen = [5, 17, 30]
    searched = ret.search(triggers)
    ann = ret.ann_ordered(triggers, seen, searched)["engagement"]
    pre = ret.preranked(triggers, seen, searched)["engagement"]
    for t, row in zip(triggers, ann, strict=True):
        sims = x @ x[t]
        sims[seen] = -np.inf
        assert [i for i, _ in row] == list(np.argsort(-sims, kind="stable")[:10])
    # Both orders rank the same candidates: the preranker's come from the ANN top 50;
    # untrained, it is ANN order plus a zero correction.
    for t, (ids, probs), ann_row in zip(triggers, pre, ann, strict=True):
        _, top = search(exact, x[[t]], 51)
        assert set(ids.tolist()) <= set(top[0].tolist()) - {5, 17, 30} and len(ids) >= 47
        assert ids[:10].tolist() == [i for i, _ in ann_row] and np.all(np.diff(probs) <= 0)
    # `ordered` names either order as `merge` does, and no other.
    assert ret.ordered("ann", triggers, seen, searched)["engagement"] == ann
    by_name = ret.ordered("preranker", triggers, seen, searched)["engagement"]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(by_name, pre, strict=True))
    with pytest.raises(ValueError, match="ranking order 'best'"):
        ret.ordered("best", triggers, seen, searched)
    # A peer's neighbour table serves through the same path.
    ids = np.tile(np.arange(1, 6), (4, 1)).astype(np.int32)
    table = NeighborHead(
        "p",
        "neighbors",
        "v",
        np.zeros((4, 0), np.float32),
        None,
        ids,
        np.tile(np.linspace(1, 0.2, 5), (4, 1)).astype(np.float32),
    )
    sims, cands = table.search(np.array([2, 0]), 3)
    assert cands.tolist() == [[1, 2, 3], [1, 2, 3]] and sims.shape == (2, 3)


def test_random_match_probability_is_exact() -> None:
    from mtmh.eval.topic_match import random_match_probability

    labels = [["a"], ["a", "b"], ["b"], ["c"], [], None]
    p = random_match_probability(labels)
    # 4 labelled items; item 0 matches item 1 only, item 1 matches 0 and 2, item 3 none.
    assert p[:4] == pytest.approx([1 / 3, 2 / 3, 1 / 3, 0.0])
    assert np.isnan(p[4:]).all()


def test_match_counter_reports_the_random_rate_of_its_own_pairs() -> None:
    from mtmh.eval.topic_match import lift, random_match_probability

    labels = [frozenset(x) for x in (["a"], ["a"], ["b"], ["b"], [])]
    m = MatchCounter(labels, random_match_probability(labels))
    m.add(0, [1, 2, 4])  # the unlabelled candidate 4 is left out: 2 pairs, 1 hit
    m.add(2, [3])
    assert m.rate == pytest.approx(2 / 3)
    assert m.random_rate == pytest.approx(1 / 3)  # every labelled item matches 1 of 3 others
    assert lift(m.rate, m.random_rate) == pytest.approx(2.0)


def test_neighbour_lift_of_a_planted_space() -> None:
    from mtmh.eval.topic_match import neighbour_topic_match

    rng = np.random.default_rng(0)
    topic = np.repeat(np.arange(10), 20)
    centres = rng.normal(size=(10, 16))
    on_topic = centres[topic] + 0.1 * rng.normal(size=(200, 16))
    noise = rng.normal(size=(200, 16))
    labels = {"l2": [[f"t{t}"] for t in topic]}
    good = neighbour_topic_match(on_topic.astype(np.float32), labels, k=5)
    bad = neighbour_topic_match(noise.astype(np.float32), labels, k=5)
    assert good["l2_random"] == pytest.approx(19 / 199)
    assert good["l2_lift"] > 9 and bad["l2_lift"] < 2.5


def test_neighbour_lift_on_a_query_sample_matches_the_full_count() -> None:
    from mtmh.eval.topic_match import neighbour_topic_match

    rng = np.random.default_rng(1)
    topic = np.repeat(np.arange(8), 25)
    emb = (rng.normal(size=(8, 8))[topic] + 0.5 * rng.normal(size=(200, 8))).astype(np.float32)
    labels = {"l2": [[f"t{t}"] for t in topic]}
    full = neighbour_topic_match(emb, labels, k=5)
    sample = neighbour_topic_match(emb, labels, k=5, max_queries=100, seed=3)
    assert full["queries"] == 200 and sample["queries"] == 100
    assert sample["l2_random"] == pytest.approx(24 / 199)
    assert sample["l2_match"] == pytest.approx(full["l2_match"], abs=0.1)


def test_the_serving_side_does_not_import_the_evaluation() -> None:
    """serve_app and mtmh.serving use the retrieval path like any other caller: importing
    them pulls in no module of mtmh.eval (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, serve_app.builder, mtmh.serving.inprocess; "
        "print(sorted(m for m in sys.modules if m.startswith('mtmh.eval')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", ["ivf_flat", "ivf_pq", "hnsw", "exact"])
def test_every_family_autotunes_to_the_target_recall_and_keeps_it_on_load(
    family: str, tmp_path: Path
) -> None:
    from mtmh.index.autotune import autotune, recall_at
    from mtmh.index.faiss_index import build_index, family_of

    x = clustered(6_000, 32, 48, seed=4)
    ids = np.arange(len(x))
    cfg = IndexConfig(family=family, nlist=64, nprobe=1)  # type: ignore[arg-type]
    index = build_index(x, ids, cfg)
    assert family_of(index) == family
    queries = x[::20]
    tuned = autotune(index, x, queries, k=61, target=0.95)
    assert tuned.met and tuned.recall >= 0.95 and tuned.family == family
    prefix = {"hnsw": "efSearch=", "exact": ""}.get(family, "nprobe=")
    assert tuned.params.startswith(prefix)
    # The chosen point is the fastest of those that reached the target, and was measured.
    assert tuned.params in [p.params for p in tuned.points]
    # What autotune measured is what the index now answers with.
    _, truth = search(build_exact(x, ids), queries, 61)
    _, found = search(index, queries, 61)
    assert recall_at(truth, found) == pytest.approx(tuned.recall)
    # Saved and loaded, the index searches with the tuned setting, not the file's default.
    meta = make_meta("m", "v1", "engagement", 32, ids, index, cfg, 1.0, tuned)
    assert meta.kind == family and meta.search_params == tuned.params
    assert meta.tuned is not None and meta.tuned["recall"] == tuned.recall
    save_index(index, meta, tmp_path)
    loaded, _ = load_index(tmp_path, "v1", "engagement", 32)
    _, again = search(loaded, queries, 61)
    assert recall_at(truth, again) == pytest.approx(tuned.recall)


def test_refined_and_graph_indexes_label_results_with_item_ids() -> None:
    from mtmh.index.autotune import recall_at
    from mtmh.index.faiss_index import build_index, set_search_params

    x = clustered(3_000, 16, 16, seed=5)
    ids = np.arange(len(x)) + 10_000
    _, truth = search(build_exact(x, ids), x[:50], 10)
    for family, params in (("ivf_pq", "nprobe=32,k_factor_rf=16"), ("hnsw", "efSearch=64")):
        index = build_index(x, ids, IndexConfig(family=family, nlist=32))  # type: ignore[arg-type]
        set_search_params(index, params)
        _, found = search(index, x[:50], 10)
        assert set(found.ravel().tolist()) <= set(ids.tolist())  # labels, not row numbers
        assert recall_at(truth, found) >= 0.9, family


def test_an_unreachable_target_keeps_the_most_accurate_setting_and_says_so() -> None:
    from mtmh.index.autotune import autotune
    from mtmh.index.faiss_index import build_index

    x = clustered(2_000, 16, 8, seed=6)
    index = build_index(x, np.arange(2_000), IndexConfig(family="ivf_pq", nlist=16, pq_m=2))
    tuned = autotune(index, x, x[:100], k=50, target=1.0)
    # 2-subquantizer PQ without enough re-ranking cannot be exact; some setting may still be.
    assert tuned.met == (tuned.recall >= 1.0)
    assert tuned.recall == max(p.recall for p in tuned.points)


def test_gpu_search_is_refused_for_families_faiss_has_no_gpu_form_of() -> None:
    with pytest.raises(ValueError, match=r"index\.family=ivf_flat"):
        IndexConfig(family="hnsw", use_gpu=True)


def test_exact_search_replaces_an_index_whose_setting_scans_most_of_the_catalog() -> None:
    from mtmh.index.autotune import autotune
    from mtmh.index.faiss_index import build_index

    x = clustered(4_000, 32, 48, seed=7)
    index = build_index(x, np.arange(len(x)), IndexConfig(family="ivf_flat", nlist=64))
    # A wide k on a small catalog needs most lists; a narrow one needs few.
    wide = autotune(index, x, x[::40], k=1_500, target=0.99)
    narrow = autotune(index, x, x[::40], k=10, target=0.9)
    nprobe = {t.params: int(t.params.split("=")[1]) for t in (wide, narrow)}
    assert wide.scanned == nprobe[wide.params] / 64
    assert narrow.scanned == nprobe[narrow.params] / 64
    assert wide.scans_at_least(0.5) and not narrow.scans_at_least(0.5)
    # The rule reads the setting only: the same setting decides the same way whatever the
    # timings said (here, an index measured far faster than exact search).
    faster = replace(wide, qps=100 * wide.exact_qps)
    assert faster.scans_at_least(0.5)
    exact = wide.as_exact()
    assert (exact.family, exact.params, exact.recall, exact.scanned) == ("exact", "", 1.0, 1.0)
    assert exact.instead_of == "ivf_flat" and not exact.scans_at_least(0.5)
    assert exact.as_meta()["instead_of"] == "ivf_flat"


def test_a_build_serves_exactly_by_the_scanned_share_and_the_same_way_every_time(
    tmp_path: Path,
) -> None:
    from mtmh.index.build import build_head_index

    run = write_tiny_run(tmp_path / "run", 600, 2_000, dim=16)
    kinds = {}
    for share in (0.5, None, 0.5):
        cfg = build_config(
            overrides=["index.family=ivf_flat", f"index.exact_from_scanned={share or 'null'}"]
        )
        meta = build_head_index(run, "content", "content", cfg)
        kinds.setdefault(share, []).append((meta.kind, meta.search_params))
    assert kinds[0.5][0] == kinds[0.5][1] == ("exact", "")
    assert kinds[None][0][0] == "ivf_flat"


@pytest.mark.parametrize("family", ["ivf_flat", "ivf_pq", "hnsw", "exact"])
def test_a_head_without_its_vector_copy_answers_exactly_like_one_with_it(family: str) -> None:
    from mtmh.index.faiss_index import build_index
    from mtmh.retrieval.heads import HeadIndex, StoredVectorsHead

    x = clustered(3_000, 16, 16, seed=7)
    index = build_index(x, np.arange(len(x)), IndexConfig(family=family, nlist=32))  # type: ignore[arg-type]
    full = HeadIndex("m", "engagement", "v", x, index)
    want = full.search(np.array([5, 77, 2_999]), 20)
    lean = StoredVectorsHead.of(full)
    assert lean.vectors.shape == (3_000, 0)  # N is kept, the vectors are not
    got = lean.search(np.array([5, 77, 2_999]), 20)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_ann_order_pools_scale_free_scores_and_no_negative_weights() -> None:
    from mtmh.retrieval.ranking import ann_order, blocked_items

    cands = np.array([[1, 2, 3], [2, 4, 3]])
    sims = np.array([[0.9, 0.45, -0.3], [0.5, 0.25, -0.1]])
    blocked = blocked_items(6, [])
    got = ann_order(sims, cands, np.array([0, 5]), blocked, keep=3)
    assert got == [[(1, 1.0), (2, 0.5), (3, 0.0)], [(2, 1.0), (4, 0.5), (3, 0.0)]]
    # A head on another scale pools the same (merge and pool read only these scores).
    assert ann_order(10 * sims, cands, np.array([0, 5]), blocked, keep=3) == got
    per_trigger = [[Candidate(i, s, "engagement") for i, s in row] for row in got]
    pooled = pool_candidates(per_trigger, 4, POOLING["ann"])
    assert [(c.item_id, c.score) for c in pooled] == [(2, 1.5), (1, 1.0), (4, 0.5), (3, 0.0)]


def test_the_distinct_merge_gives_each_trigger_k_new_items_by_the_quota() -> None:
    from mtmh.retrieval.merge import merge_distinct

    def lists(*rows: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array(r), np.linspace(0.9, 0.1, len(r))) for r in rows]

    ordered = {
        "engagement": lists([1, 2, 3, 4], [1, 2, 5, 6]),
        "relevance": lists([7, 1, 8, 9], [7, 8, 10, 3]),
    }
    got = merge_distinct(ordered, k=2, alpha=50)
    # Trigger 0: engagement 1, then relevance 7. Trigger 1: neither 1 nor 7 again, so
    # engagement's 2 and relevance's 8; items dropped by trigger 0's merge (2, 8) were free.
    assert [[(c.item_id, c.head) for c in row] for row in got] == [
        [(1, "engagement"), (7, "relevance")],
        [(2, "engagement"), (8, "relevance")],
    ]
    alone = merge_distinct({"engagement": ordered["engagement"]}, k=3, alpha=50)
    assert [[c.item_id for c in row] for row in alone] == [[1, 2, 3], [5, 6]]
    with pytest.raises(ValueError, match="cannot merge"):
        merge_distinct({"a": ordered["engagement"], "b": ordered["relevance"]}, 2, 50)


def test_the_relevance_head_offers_its_preranker_only_its_nearest_candidates() -> None:
    """A preranker that prefers the farthest candidates still picks the relevance head's
    from its `relevance_k_ann` nearest valid ones (seen items do not count), while the
    engagement head's come from its whole K_ann."""
    from mtmh.retrieval.heads import HeadIndex
    from mtmh.retrieval.ranking import preranker_order
    from mtmh.retrieval.retriever import Retriever
    from tests.scorers import FarthestFirst

    x = clustered(400, 16, 8, seed=4)
    exact = build_exact(x, np.arange(len(x)))
    heads = {h: HeadIndex("m", h, "v", x, exact) for h in FarthestFirst().heads}
    ret = Retriever(heads, 50, 10, FarthestFirst(), relevance_k_ann=20)
    triggers, seen = np.array([7, 90]), [7, 90, 11, 12, 13]
    kept = ret.preranked(triggers, seen)
    for t, (rel_ids, _), (eng_ids, _) in zip(
        triggers, kept["relevance"], kept["engagement"], strict=True
    ):
        sims = x @ x[t]
        sims[seen] = -np.inf
        nearest = np.argsort(-sims, kind="stable")
        assert sorted(rel_ids.tolist()) == sorted(nearest[:20].tolist())
        assert rel_ids[0] == nearest[19]  # farthest of the 20 first
        assert len(eng_ids) > 40 and set(nearest[:50].tolist()) >= set(eng_ids.tolist())
    # preranker_order takes the reach it is given, and None offers everything; the reach a
    # head gets (preranker_reach) is never below the request's K.
    from mtmh.retrieval.ranking import preranker_reach

    assert preranker_reach("relevance", 5, keep=10) == 10
    assert preranker_reach("engagement", 5, keep=10) is None
    sims, cands, _ = ret.search(triggers)["relevance"]
    blocked = np.zeros(len(x) + 1, bool)
    blocked[-1] = True
    assert all(len(ids) == 5 for ids, _ in preranker_order(cands, -sims, triggers, blocked, 5))
    assert all(len(ids) == 50 for ids, _ in preranker_order(cands, -sims, triggers, blocked))
    assert Retriever(heads, 50, 10, FarthestFirst()).relevance_k_ann == 50


def test_relevance_k_ann_defaults_to_twice_k_and_is_checked() -> None:
    from pydantic import ValidationError

    from mtmh.config import EvalConfig

    assert EvalConfig().relevance_k_ann_for(4_000) == 60
    assert EvalConfig(relevance_k_ann=500).relevance_k_ann_for(4_000) == 400  # K_ann caps it
    assert EvalConfig(k_ann=40).relevance_k_ann_for(4_000) == 40
    with pytest.raises(ValidationError, match=r"relevance_k_ann \(10\) must be at least"):
        EvalConfig(relevance_k_ann=10)
