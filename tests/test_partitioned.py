"""Cluster-partitioned retrieval: quotas, the per-cluster search, and the Retriever with it."""

from __future__ import annotations

import numpy as np
import pytest

from mtmh.clusters.kmeans import spherical_kmeans
from mtmh.index.faiss_index import build_exact, search
from mtmh.retrieval.cluster_index import ClusterIndex
from mtmh.retrieval.heads import HeadIndex
from mtmh.retrieval.partitioned import PartitionedHead
from mtmh.retrieval.quotas import QuotaCut, cluster_quotas, fill_quotas
from mtmh.retrieval.ranking import blocked_items
from mtmh.retrieval.retriever import Retriever
from tests.scorers import FarthestFirst


def test_quotas_add_up_to_k_in_proportion_with_largest_remainders() -> None:
    assert cluster_quotas(np.array([3.0, 1.0]), 4).tolist() == [3, 1]
    assert cluster_quotas(np.ones(3), 10).tolist() == [4, 3, 3]  # the tie: the first
    assert cluster_quotas(np.array([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]  # 3.5 2.1 1.4
    assert cluster_quotas(np.zeros(2), 5).tolist() == [3, 2]  # no affinity at all: equal
    with pytest.raises(ValueError, match=">= 0"):
        cluster_quotas(np.array([1.0, -0.1]), 3)


def test_a_short_cluster_leaves_its_places_to_the_most_similar_leftovers() -> None:
    a = (np.array([0.9, 0.8, 0.7]), np.array([1, 2, 3]))
    b = (np.array([0.5]), np.array([4]))  # quota 2, holds 1
    c = (np.array([0.6, 0.4]), np.array([5, 6]))
    sims, ids = fill_quotas([a, b, c], np.array([2, 2, 1]), 5)
    # Quotas: 1, 2 from a; 4 from b; 5 from c; b's free place goes to 3 (0.7 > 0.4).
    assert ids.tolist() == [1, 2, 3, 5, 4] and sims.tolist() == pytest.approx(
        [0.9, 0.8, 0.7, 0.6, 0.5]
    )
    _, top = fill_quotas([a, b, c], None, 3)  # "score": the most similar, clusters aside
    assert top.tolist() == [1, 2, 3]


def _head(n: int = 300, k: int = 6) -> tuple[HeadIndex, ClusterIndex, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(k, 16))
    x = centres[rng.integers(0, k, n)] + 0.6 * rng.normal(size=(n, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assign = spherical_kmeans(x, k, seed=0).assignments
    head = HeadIndex("m", "engagement", "v", x, build_exact(x, np.arange(n)))
    return head, ClusterIndex.build(x, assign), assign


def test_visiting_every_cluster_by_score_is_the_global_search() -> None:
    head, part, _ = _head()
    ph = PartitionedHead.of(head, part, visit=part.num_clusters, strategy="score")
    triggers = np.array([3, 50, 120])
    blocked = blocked_items(300, [7, 8, 9])
    _, got = ph.search(triggers, 20, blocked)
    _, exact = search(head.index, head.vectors[triggers], 60)
    for t, row in enumerate(exact):
        want = [i for i in row if i != triggers[t] and i not in (7, 8, 9)][:20]
        assert got[t].tolist() == want


def test_uniform_quotas_hold_exactly_and_skip_the_trigger_and_seen_items() -> None:
    head, part, assign = _head()
    ph = PartitionedHead.of(head, part, visit=4, strategy="uniform")
    triggers = np.array([3, 50, 120, 299])
    seen = [10, 11, 12, 13, 14]
    sims, got = ph.search(triggers, 30, blocked_items(300, seen))
    affinity = head.vectors[triggers] @ part.centroids.T
    for t, row in enumerate(got):
        assert len(set(row.tolist())) == 30 and triggers[t] not in row
        assert not set(row.tolist()) & set(seen)
        assert (np.diff(sims[t]) <= 1e-6).all()  # best first
        visited = np.argsort(-affinity[t], kind="stable")[:4]
        counts = np.bincount(assign[row], minlength=part.num_clusters)
        assert set(np.flatnonzero(counts)) <= set(visited.tolist())
        assert sorted(counts[visited].tolist()) == [7, 7, 8, 8]  # 30 over 4: exactly
    with pytest.raises(ValueError, match="merge strategy"):
        PartitionedHead.of(head, part, visit=2, strategy="random")
    with pytest.raises(ValueError, match="visit=0"):
        PartitionedHead.of(head, part, visit=0, strategy="uniform")


def test_affinity_quotas_follow_the_triggers_closeness_to_each_cluster() -> None:
    head, part, assign = _head()
    ph = PartitionedHead.of(head, part, visit=3, strategy="affinity")
    trigger = np.array([42])
    _, got = ph.search(trigger, 20)
    affinity = (head.vectors[trigger] @ part.centroids.T)[0]
    visited = np.argsort(-affinity, kind="stable")[:3]
    want = cluster_quotas(np.exp((affinity[visited] - affinity[visited].max()) / 0.1), 20)
    assert want[0] > want[-1]  # the nearest cluster gets more places than the third
    counts = np.bincount(assign[got[0]], minlength=part.num_clusters)[visited]
    assert counts.tolist() == want.tolist()


def test_the_preranker_chooses_among_k_ann_and_the_quotas_hold_on_the_k_kept() -> None:
    head, part, assign = _head()
    ph = PartitionedHead.of(head, part, visit=5, strategy="uniform")
    ret = Retriever({"engagement": ph}, k_ann=60, keep=10, preranker=FarthestFirst(("engagement",)))
    triggers, seen = np.array([3, 50]), [4, 5]
    searched = ret.search(triggers, seen)
    found = searched["engagement"]
    assert found.ids.shape == (2, 60) and not np.isin(found.ids, [*seen, 3, 50]).any()
    for row in found.ids:  # K_ann shared too: 12 from each visited cluster
        assert sorted(np.bincount(assign[row])[np.unique(assign[row])]) == [12] * 5
    per_order = {
        "ann": [
            np.array([i for i, _ in r])
            for r in ret.ann_ordered(triggers, seen, searched)["engagement"]
        ],
        "preranker": [ids for ids, _ in ret.preranked(triggers, seen, searched)["engagement"]],
    }
    for order, rows in per_order.items():
        for ids in rows:
            kept = ids[:10]
            assert np.bincount(assign[kept], minlength=part.num_clusters).max() == 2, order
            assert len(np.unique(assign[kept])) == 5, order
    # The preranker's K are each cluster's least similar of its K_ann: a choice ANN order
    # does not make.
    assert not set(per_order["ann"][0].tolist()) & set(per_order["preranker"][0][:10].tolist())


def test_a_quota_cut_puts_each_clusters_share_first_and_the_rest_after() -> None:
    ids = np.array([[10, 11, 12, 13, 14, 15]])
    clusters = np.array([[0, 0, 0, 1, 1, 2]])
    quotas = np.array([[2, 1, 1]])  # K = 4
    cut = QuotaCut(ids, clusters, quotas, keep=4)
    ordered = [(np.array([10, 11, 12, 13, 14]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]))]
    ((got_ids, _),) = cut.apply(ordered)
    # Cluster 0 keeps 10, 11; cluster 1 keeps 13; cluster 2 has nothing ordered, so its place
    # goes to the best leftover, 12; then 14 follows.
    assert got_ids.tolist() == [10, 11, 12, 13, 14]
    ordered = [(np.array([10, 11, 12, 15, 13]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]))]
    ((got_ids, _),) = cut.apply(ordered)
    assert got_ids.tolist() == [10, 11, 15, 13, 12]  # 12 is past cluster 0's quota
    assert QuotaCut(ids, clusters, None, 4).apply(ordered) is ordered  # "score": no quotas


def test_both_cluster_layouts_return_the_same_neighbours() -> None:
    head, _, assign = _head()
    lists = ClusterIndex.build(head.vectors, assign, layout="lists")
    indexes = ClusterIndex.build(head.vectors, assign, layout="indexes")
    queries, clusters = head.vectors[[3, 50, 120, 7]], np.array([0, 2, 2, 5])
    (s1, i1), (s2, i2) = lists.search(queries, clusters, 40), indexes.search(queries, clusters, 40)
    assert np.array_equal(i1, i2)
    np.testing.assert_allclose(s1[i1 >= 0], s2[i2 >= 0], rtol=1e-5)
    for row, c in zip(i1, clusters, strict=True):
        assert set(assign[row[row >= 0]]) == {c}
        assert (row >= 0).sum() == min(40, int(np.sum(assign == c)))
    with pytest.raises(ValueError, match="cluster layout"):
        ClusterIndex.build(head.vectors, assign, layout="hnsw")


def test_a_prompted_head_searches_each_cluster_with_the_triggers_query_for_it() -> None:
    head, part, assign = _head()
    n, k, d = len(head.vectors), part.num_clusters, head.vectors.shape[1]
    trigger = 10
    # Every cluster's query for the trigger is the (unit) vector of one chosen member: that
    # member must top its cluster's list, whatever the trigger's plain vector prefers.
    chosen = [int(np.flatnonzero(assign == c)[-1]) for c in range(k)]
    queries = np.tile(head.vectors[:, None, :], (1, k, 1))
    queries[trigger] = head.vectors[chosen]
    ph = PartitionedHead.of(head, part, visit=k, strategy="uniform", queries=queries)
    _, ids = ph.search(np.array([trigger]), k)  # one place per cluster
    assert trigger not in chosen
    assert sorted(ids[0].tolist()) == sorted(chosen)
    plain = PartitionedHead.of(head, part, visit=k, strategy="uniform")
    assert set(plain.search(np.array([trigger]), k)[1][0]) != set(ids[0])
    with pytest.raises(ValueError, match="a query per item and cluster"):
        PartitionedHead.of(head, part, 2, "uniform", queries=np.zeros((n, k + 1, d)))
