"""The `dat` variant (divide and conquer): cluster prompts on the query side only, in-cluster
hard negatives with their own logQ, the per-cluster query table, and a Ray Train run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtmh.clusters.artifact import save_clusters
from mtmh.clusters.kmeans import Clustering
from mtmh.clusters.query_table import clusters_digest, load_queries, save_queries
from mtmh.config import ModelConfig, build_config
from mtmh.errors import ArtifactError
from mtmh.losses import NEG_INF
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


def _task(per_cluster: int = 3, **kw: object) -> RetrievalTask:
    torch.manual_seed(0)
    hard = ClusterNegatives(CLUSTERS, per_cluster, seed=0)
    tower = ItemTower(get_variant("dat"), _tables(), _cfg(**kw), hard.num_clusters)
    uniform = MixedNegatives(np.full(N, -np.log(N), np.float32), 4, seed=0)
    return RetrievalTask(tower, _cfg(**kw), uniform, cluster_negatives=hard)


def test_in_cluster_negatives_come_from_each_cluster_with_their_own_log_q() -> None:
    sizes = np.array([1, 5, 10])
    assignments = np.repeat(np.arange(3), sizes)
    np.random.default_rng(0).shuffle(assignments)
    hard = ClusterNegatives(assignments, per_cluster=50, seed=7)
    ids = hard.sample(rank=0, step=4)
    assert ids.shape == (150,)
    drawn = torch.as_tensor(assignments)[ids].view(3, 50)
    assert (drawn == torch.arange(3).unsqueeze(1)).all()  # cluster 0's, then 1's, then 2's
    # Every member of a cluster can be drawn; a one-item cluster draws only itself.
    assert set(ids[100:].tolist()) == set(np.flatnonzero(assignments == 2).tolist())
    assert set(ids[:50].tolist()) == set(np.flatnonzero(assignments == 0).tolist())
    expected = torch.tensor([math.log(50 / n) for n in sizes]).repeat_interleave(50)
    torch.testing.assert_close(hard.log_q(), expected)
    # A row sees only its own cluster's draws.
    foreign = hard.foreign(torch.tensor([2, 0]))
    assert (~foreign[0]).nonzero().squeeze(1).tolist() == list(range(100, 150))
    assert (~foreign[1]).nonzero().squeeze(1).tolist() == list(range(50))
    # Draws are a function of (seed, rank, step): a resumed worker draws the same.
    assert torch.equal(ids, hard.sample(rank=0, step=4))
    assert not torch.equal(ids, hard.sample(rank=1, step=4))


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
    hard = task.cluster_negatives.sample(0, 0)
    task(trig, tgt, torch.tensor([5, 17]), None, hard)["loss"].backward()
    assert tower.prompts.grad is not None and tower.prompts.grad.abs().sum() > 0


def test_in_cluster_negatives_join_only_their_clusters_rows_with_their_log_q() -> None:
    task = _task(per_cluster=2)
    hard = task.cluster_negatives
    assert hard is not None
    trig, tgt = torch.tensor([0, 8]), torch.tensor([1, 9])  # targets in clusters 0 and 2
    random_ids = torch.tensor([20])
    cluster_ids = hard.sample(0, 3)  # 6 clusters x 2
    loss = task(trig, tgt, random_ids, None, cluster_ids)["loss"]
    # By hand: row i's softmax over the 2 in-batch, 1 random and its own cluster's 2 columns.
    with torch.no_grad():
        emb = task.tower(torch.arange(N))["engagement"]
        q = task.tower(trig, prompt=hard.cluster_of(tgt))["engagement"]
    log_q = task.negatives.log_q(tgt, 1)
    expected = []
    for i, c in enumerate(hard.cluster_of(tgt).tolist()):
        own = cluster_ids[2 * c : 2 * c + 2]
        cols = torch.cat([tgt, random_ids, own])
        z = q[i] @ emb[cols].T / task.cfg.temperature
        z = z - torch.cat([log_q, torch.full((2,), math.log(2 / 4))])
        z[(cols == tgt[i]) | (cols == trig[i])] = NEG_INF
        z[i] = q[i] @ emb[tgt[i]] / task.cfg.temperature - log_q[i]  # its own positive
        expected.append(-(z[i] - torch.logsumexp(z, 0)))
    torch.testing.assert_close(loss.detach(), torch.stack(expected).mean(), rtol=1e-5, atol=1e-5)


def test_prompted_scores_score_each_item_with_its_clusters_query() -> None:
    rng = np.random.default_rng(1)
    queries, emb = rng.normal(size=(N, 6, 8)), rng.normal(size=(N, 8))
    fn = prompted_scores(torch.as_tensor(queries), torch.as_tensor(emb).float(), CLUSTERS)
    got = fn(np.array([3, 17])).numpy()
    for row, trigger in enumerate([3, 17]):
        for j in range(N):
            # Scores are float32 products of 8 terms of about 1: compared with the float64
            # product, a score near 0 is off by float32's rounding of the terms, so the
            # tolerance is absolute too (rel alone failed on -0.0333 by 5.7e-7).
            want = queries[trigger, CLUSTERS[j]] @ emb[j]
            assert got[row, j] == pytest.approx(want, rel=1e-5, abs=1e-5)
    # With `visit`, only the trigger's nearest clusters (by its plain vector) are searched.
    near = prompted_scores(torch.as_tensor(queries), torch.as_tensor(emb).float(), CLUSTERS, 2)
    got = near(np.array([3])).numpy()[0]
    centroids = np.stack([emb[np.equal(CLUSTERS, c)].sum(0) for c in range(6)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    nearest = set(np.argsort(-(centroids @ emb[3]))[:2].tolist())
    searched = np.isfinite(got)
    assert set(CLUSTERS[searched].tolist()) == nearest and searched.sum() == 8


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
    task = _task(per_cluster=3, temperature=0.1)
    opt = torch.optim.Adam(task.parameters(), lr=0.02)
    trig = torch.arange(N)
    tgt = trig ^ 1
    hard = task.cluster_negatives
    assert hard is not None
    first = None
    for step in range(300):
        loss = task(trig, tgt, torch.randint(0, N, (4,)), None, hard.sample(0, step))["loss"]
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
    hard = keys("model.num_cluster_negatives=8")  # dat's own knob retrains dat alone
    assert {k for k in base if hard[k] != base[k]} == {
        "train:dat",
        "index:dat",
        "preranker:dat",
        "evaluate",
    }
    search = keys("clusters.strategy=uniform")  # how clusters are searched, not what they are
    assert {k for k in base if search[k] != base[k]} == {"preranker:dat", "evaluate"}
    with pytest.raises(ConfigError, match="trains against the catalog's clusters"):
        keys("clusters.source=mtmh")


def test_in_cluster_draws_repeat_across_processes() -> None:
    """The draws are a function of (seed, rank, step) alone, whatever the process's string
    hashing (PYTHONHASHSEED) is."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from mtmh.model.negatives import ClusterNegatives; "
        "print(ClusterNegatives(np.arange(20) % 4, 8, 7).sample(0, 3).tolist())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
