"""The `dat` variant (divide and conquer): cluster prompts on the query side only, in-cluster
hard negatives with their own logQ, the per-cluster query table, and a Ray Train run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtmh.clusters.artifact import save_clusters
from mtmh.clusters.kmeans import Clustering
from mtmh.clusters.query_table import clusters_digest, load_queries, save_queries
from mtmh.config import ModelConfig, build_config
from mtmh.errors import ArtifactError
from mtmh.losses import NEG_INF, CandidateSet, candidate_logits, info_nce, row_logits
from mtmh.model.negatives import ClusterNegatives, MixedNegatives
from mtmh.model.prompted import prompted_queries, prompted_scores
from mtmh.model.task import RetrievalTask
from mtmh.model.tower import ItemFeatureTables, ItemTower
from mtmh.model.variants import get_variant
from tests.tiny_data import write_tiny_run

N = 24
CLUSTERS = np.arange(N) // 4  # 6 clusters of 4: (0..3), (4..7), ...; pairs stay together


def _tables() -> ItemFeatureTables:
    rng = np.random.default_rng(0)
    return ItemFeatureTables(
        dense=rng.random((N, 2)).astype(np.float32),
        categorical=rng.integers(0, 3, size=(N, 1)),
        cardinalities=[3],
    )


def _cfg(**kw: object) -> ModelConfig:
    base = {"dim": 8, "id_dim": 8, "cat_dim": 4, "dense_dim": 4, "hidden_dim": 16}
    return ModelConfig(**{**base, "pair_weighting": "none", **kw})  # type: ignore[arg-type]


def _task(per_row: int = 3, **kw: object) -> RetrievalTask:
    torch.manual_seed(0)
    hard = ClusterNegatives(CLUSTERS, per_row, seed=0)
    tower = ItemTower(get_variant("dat"), _tables(), _cfg(**kw), hard.num_clusters)
    uniform = MixedNegatives(np.full(N, -np.log(N), np.float32), 4, seed=0)
    return RetrievalTask(tower, _cfg(**kw), uniform, cluster_negatives=hard)


def test_in_cluster_negatives_come_from_the_positives_cluster_with_their_own_log_q() -> None:
    sizes = np.array([1, 5, 10])
    assignments = np.repeat(np.arange(3), sizes)
    np.random.default_rng(0).shuffle(assignments)
    hard = ClusterNegatives(assignments, per_row=50, seed=7)
    targets = torch.tensor([3, 9, 14, 0, 15])
    clusters = hard.cluster_of(targets)
    ids = hard.sample(clusters, rank=0, step=4)
    assert ids.shape == (5, 50)
    assert (torch.as_tensor(assignments)[ids] == clusters.unsqueeze(1)).all()
    # Every member of a cluster can be drawn; a one-item cluster draws only itself.
    big = int(np.argmax(sizes))
    row = int(np.flatnonzero(clusters.numpy() == big)[0]) if big in clusters else None
    if row is not None:
        assert set(ids[row].tolist()) == set(np.flatnonzero(assignments == big).tolist())
    log_q = hard.log_q(clusters)
    expected = torch.tensor([math.log(50 / sizes[c]) for c in clusters.tolist()])
    torch.testing.assert_close(log_q, expected.unsqueeze(1).expand(-1, 50))
    # Draws are a function of (seed, rank, step): a resumed worker draws the same.
    assert torch.equal(ids, hard.sample(clusters, rank=0, step=4))
    assert not torch.equal(ids, hard.sample(clusters, rank=1, step=4))


def test_a_cluster_with_no_items_is_refused() -> None:
    with pytest.raises(ValueError, match=r"clusters \[1\] have no items"):
        ClusterNegatives(np.array([0, 0, 2]), 4, seed=0)


def test_the_prompt_changes_only_the_query_side() -> None:
    task = _task()
    tower = task.tower
    ids = torch.arange(N)
    clusters = torch.as_tensor(CLUSTERS)
    with torch.no_grad():
        plain = tower(ids)["engagement"]
        # Prompts start at one: every cluster's query starts as the plain embedding.
        torch.testing.assert_close(tower(ids, prompt=clusters)["engagement"], plain)
        assert tower.prompts is not None
        tower.prompts.mul_(torch.rand_like(tower.prompts) + 0.5)
        torch.testing.assert_close(tower(ids)["engagement"], plain)  # candidates: unchanged
        prompted = tower(ids, prompt=clusters)["engagement"]
        assert not torch.allclose(prompted, plain)
        # Another cluster's prompt gives another query for the same item.
        other = tower(ids, prompt=(clusters + 1) % 6)["engagement"]
        assert not torch.allclose(prompted, other)
    # A loss on candidates alone sends no gradient to the prompts.
    tower(ids)["engagement"].sum().backward()
    assert tower.prompts.grad is None
    # The training loss does reach them (through the queries).
    trig = torch.arange(0, N, 2)
    tgt = trig + 1
    rows = task.cluster_negatives.sample(task.cluster_negatives.cluster_of(tgt), 0, 0)
    task(trig, tgt, torch.tensor([5, 17]), None, rows)["loss"].backward()
    assert tower.prompts.grad is not None and tower.prompts.grad.abs().sum() > 0


def test_row_negatives_join_the_softmax_with_their_log_q_and_the_hit_mask() -> None:
    torch.manual_seed(0)
    a, p, neg = F.normalize(torch.randn(2, 4), dim=1), torch.randn(2, 4), torch.randn(1, 4)
    rows = torch.randn(2, 2, 4)
    pos_ids, neg_ids, trig_ids = torch.tensor([10, 11]), torch.tensor([12]), torch.tensor([1, 2])
    row_ids = torch.tensor([[13, 10], [14, 15]])  # row 0's second is its own positive: a hit
    shared_q, row_q = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([[-0.5, -0.5], [0.2, 0.3]])
    cands = CandidateSet.build(pos_ids, neg_ids, shared_q, trig_ids)
    cands = cands.with_row_negatives(row_ids, row_q, pos_ids, trig_ids)
    logits = torch.cat([candidate_logits(a, p, neg, 0.5), row_logits(a, rows, 0.5)], dim=1)
    loss = info_nce(logits, cands)
    # By hand: row i's softmax over its 3 shared and 2 own columns, logQ subtracted.
    expected = []
    for i in range(2):
        cols = [a[i] @ p[0], a[i] @ p[1], a[i] @ neg[0], a[i] @ rows[i, 0], a[i] @ rows[i, 1]]
        z = torch.stack(cols) / 0.5 - torch.cat([shared_q, row_q[i]])
        if i == 0:
            z[4] = NEG_INF
        expected.append(-(z[i] - torch.logsumexp(z, 0)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    assert cands.ids.shape == (2, 5) and cands.invalid.shape == (2, 5)


def test_prompted_scores_score_each_item_with_its_clusters_query() -> None:
    rng = np.random.default_rng(1)
    queries, emb = rng.normal(size=(N, 6, 8)), rng.normal(size=(N, 8))
    fn = prompted_scores(torch.as_tensor(queries), torch.as_tensor(emb).float(), CLUSTERS)
    got = fn(np.array([3, 17])).numpy()
    for row, trigger in enumerate([3, 17]):
        for j in range(N):
            assert got[row, j] == pytest.approx(queries[trigger, CLUSTERS[j]] @ emb[j], rel=1e-5)


def test_queries_are_every_item_times_every_prompt_and_load_only_with_their_clusters(
    tmp_path: Path,
) -> None:
    task = _task()
    queries = prompted_queries(task.tower)
    assert queries["engagement"].shape == (N, 6, 8)
    with torch.no_grad():
        q5 = task.tower(torch.arange(N), prompt=torch.full((N,), 5))["engagement"]
    np.testing.assert_allclose(queries["engagement"][:, 5], q5.numpy(), atol=1e-6)
    save_queries(tmp_path, queries, clusters_digest(CLUSTERS))
    loaded = load_queries(tmp_path, "engagement", CLUSTERS)
    np.testing.assert_allclose(loaded, queries["engagement"], atol=2e-3)  # float16 on disk
    with pytest.raises(ArtifactError, match="other clusters"):
        load_queries(tmp_path, "engagement", (CLUSTERS + 1) % 6)


def test_a_tiny_dat_tells_apart_items_of_one_cluster() -> None:
    """Pairs (0,1), (2,3), ... share a cluster with another pair: only hard negatives and
    the prompts separate a positive from its cluster mates."""
    task = _task(per_row=3, temperature=0.1)
    opt = torch.optim.Adam(task.parameters(), lr=0.02)
    trig = torch.arange(N)
    tgt = trig ^ 1
    hard = task.cluster_negatives
    assert hard is not None
    first = None
    for step in range(300):
        rows = hard.sample(hard.cluster_of(tgt), 0, step)
        loss = task(trig, tgt, torch.randint(0, N, (4,)), None, rows)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.tower.eval()
    with torch.no_grad():
        emb = task.tower(torch.arange(N))["engagement"]
    queries = torch.as_tensor(prompted_queries(task.tower)["engagement"])
    scores = prompted_scores(queries, emb, CLUSTERS)(np.arange(N)) - 10 * torch.eye(N)
    assert (scores.argmax(dim=1) == tgt).all()
    assert loss.item() < 0.3 * first


@pytest.mark.usefixtures("ray_local")
def test_dat_trains_on_ray_against_the_runs_clusters_and_writes_its_queries(
    tmp_path: Path,
) -> None:
    from mtmh.model.train_loop import fit, model_dir

    run = write_tiny_run(tmp_path / "run", N)
    cfg = build_config(
        overrides=[
            "model.variant=dat",
            "model.dim=8",
            "model.id_dim=8",
            "model.hidden_dim=16",
            "model.num_random_negatives=8",
            "model.num_cluster_negatives=4",
            "train.batch_size=32",
            "train.cpus_per_worker=0.5",
            "train.epochs=1",
            "holdout.users=0",
            "train.dedup_pairs=false",
        ]
    )
    with pytest.raises(FileNotFoundError, match="no clusters"):
        fit(cfg, run)
    clusters = Clustering(CLUSTERS.astype(np.int32), np.eye(6, 8, dtype=np.float32), 0.0)
    save_clusters(run, clusters, {})
    result = fit(cfg, run)
    assert result.error is None
    out = model_dir(run, "dat")
    queries = load_queries(out, "engagement", CLUSTERS)
    assert queries.shape == (N, 6, 8)
    assert np.isfinite(queries).all()


def test_the_pipeline_trains_dat_after_the_clusters_and_retrains_it_when_they_change(
    tmp_path: Path,
) -> None:
    from mtmh.config import ConfigError
    from mtmh.pipeline import plan

    def keys(*overrides: str) -> dict[str, str]:
        cfg = build_config(overrides=["pipeline.variants=[mtmh, dat]", *overrides])
        return {s.name: s.key for s in plan(cfg, tmp_path)}

    base = keys()
    names = list(base)
    assert names.index("clusters") < names.index("train:dat")
    more = keys("clusters.num_clusters=16")
    assert more["train:dat"] != base["train:dat"] and more["train:mtmh"] == base["train:mtmh"]
    search = keys("clusters.strategy=uniform")  # how clusters are searched, not what they are
    assert {k for k in base if search[k] != base[k]} == {"preranker", "evaluate"}
    with pytest.raises(ConfigError, match="trains against the catalog's clusters"):
        keys("clusters.source=mtmh")
