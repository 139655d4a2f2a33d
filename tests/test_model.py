"""The item tower and its training: gradients, a tiny overfit, and Ray Train end to end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mtmh.config import ModelConfig, RunConfig, build_config
from mtmh.model.negatives import ClusterNegatives, MixedNegatives
from mtmh.model.task import RetrievalTask
from mtmh.model.tower import ItemFeatureTables, ItemTower
from mtmh.model.variants import VARIANTS, get_variant
from tests.tiny_data import write_tiny_run

N_ITEMS = 24


def _tables(n: int = N_ITEMS, seed: int = 0) -> ItemFeatureTables:
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(n, 8)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    return ItemFeatureTables(
        dense=rng.random((n, 2)).astype(np.float32),
        categorical=rng.integers(0, 3, size=(n, 1)),
        cardinalities=[3],
        content_features=teacher.copy(),
        teacher=teacher,
    )


def _cfg(**kw: object) -> ModelConfig:
    base = {"dim": 8, "id_dim": 8, "cat_dim": 4, "dense_dim": 4, "hidden_dim": 16}
    return ModelConfig(**{**base, **kw})  # type: ignore[arg-type]


def _uniform() -> MixedNegatives:
    """A sampler for a catalog whose items are all equally popular."""
    return MixedNegatives(np.full(N_ITEMS, -np.log(N_ITEMS), np.float32), 3, seed=0)


def _pairs(n: int = N_ITEMS) -> tuple[torch.Tensor, torch.Tensor]:
    """Items come in pairs (0,1), (2,3), ...: each is the other's only positive."""
    trig = torch.arange(n)
    return trig, trig ^ 1


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_embeds_and_trains_one_step(name: str) -> None:
    tables = _tables()
    variant = get_variant(name)
    hard = ClusterNegatives(np.arange(N_ITEMS) % 3, 4, seed=0) if variant.prompted else None
    tower = ItemTower(variant, tables, _cfg(), hard.num_clusters if hard else 0)
    task = RetrievalTask(tower, _cfg(), _uniform(), tables.teacher, hard)
    trig, tgt = _pairs()
    out = task(
        trig[:8], tgt[:8], torch.tensor([5, 9, 17]), None, hard.sample(0, 0) if hard else None
    )
    out["loss"].backward()
    emb = tower(torch.arange(4))
    assert set(emb) == set(get_variant(name).heads)
    for e in emb.values():
        torch.testing.assert_close(e.norm(dim=1), torch.ones(4))
    assert torch.isfinite(out["loss"])


def test_engagement_head_gets_no_gradient_from_l_r() -> None:
    """The engagement head's gradients are the same whatever the weight of L_r; the shared
    bottom's are not (L_r reaches it through the relevance head)."""
    tables = _tables()
    trig, tgt = _pairs()
    negatives = torch.tensor([3, 11, 20])
    grads = {}
    for w_r in (0.0, 5.0):
        torch.manual_seed(0)
        tower = ItemTower(get_variant("mtmh"), tables, _cfg(w_r=w_r))
        task = RetrievalTask(tower, _cfg(w_r=w_r), _uniform(), tables.teacher)
        task(trig, tgt, negatives)["loss"].backward()
        grads[w_r] = {
            "head": [p.grad.clone() for p in tower.heads["engagement"].parameters()],
            "bottom": [p.grad.clone() for p in tower.bottom.parameters()],
        }
    for a, b in zip(grads[0.0]["head"], grads[5.0]["head"], strict=True):
        torch.testing.assert_close(a, b)
    assert any(
        not torch.allclose(a, b)
        for a, b in zip(grads[0.0]["bottom"], grads[5.0]["bottom"], strict=True)
    )


def test_a_tiny_model_overfits_a_tiny_pair_set() -> None:
    tables = _tables()
    torch.manual_seed(0)
    cfg = _cfg(temperature=0.1, pair_weighting="none")  # no teacher: nothing to weigh by
    tower = ItemTower(get_variant("itemcf"), tables, cfg)
    task = RetrievalTask(tower, cfg, _uniform())
    opt = torch.optim.Adam(task.parameters(), lr=0.02)
    trig, tgt = _pairs()
    first = None
    for _ in range(300):
        loss = task(trig, tgt, torch.randint(0, N_ITEMS, (8,)))["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    emb = tower(torch.arange(N_ITEMS))["engagement"]
    scores = emb @ emb.T - 10 * torch.eye(N_ITEMS)  # the item itself is not a candidate
    assert (scores.argmax(dim=1) == tgt).all()
    assert loss.item() < 0.2 * first


def _train_cfg(*extra: str) -> RunConfig:
    # The generated run has pairs and content but no T1 log: no validation split. Its 512
    # pairs repeat 24 distinct ones, so the step counts below are of undeduplicated pairs.
    return build_config(
        overrides=[
            "model.dim=8",
            "model.id_dim=8",
            "model.hidden_dim=16",
            "model.num_random_negatives=8",
            "train.batch_size=32",
            "train.report_every=2",
            "train.cpus_per_worker=0.5",
            "train.optimizer=adam",
            "holdout.users=0",
            "train.dedup_pairs=false",
            *extra,
        ]
    )


@pytest.mark.usefixtures("ray_local")
def test_two_worker_torch_trainer_finishes_on_tiny_data(tmp_path: Path) -> None:
    from mtmh.model.train_loop import fit

    run = write_tiny_run(tmp_path / "run", N_ITEMS)
    cfg = _train_cfg(
        "train.num_workers=2",
        "train.epochs=2",
        "train.fresh_snapshot_every=4",
        "train.fresh_max_interactions=1000",
    )
    staged = set(Path(tempfile.gettempdir()).glob("mtmh-ckpt-*"))
    result = fit(cfg, run)
    assert result.error is None
    # Each checkpoint is staged in a temporary folder; none outlives its report.
    assert set(Path(tempfile.gettempdir()).glob("mtmh-ckpt-*")) <= staged
    out = run / "models" / "mtmh"
    # 512 pairs over 2 workers in batches of 32, 2 epochs: 8 steps per worker and epoch.
    assert result.metrics["step"] == 16
    for head in ("engagement", "relevance"):
        table = pq.read_table(out / "embeddings" / f"{head}.parquet")
        assert table.num_rows == N_ITEMS
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"engagement/l_e", "relevance/l_r", "relevance/loss", "pairs_per_s"} <= set(rows[0])
    snapshots = sorted((out / "fresh").glob("step-*.npz"))
    assert [p.stem for p in snapshots] == [f"step-{s:07d}" for s in (4, 8, 12, 16)]
    with np.load(snapshots[0]) as snap:
        assert snap["engagement"].shape == (N_ITEMS, 8) and len(snap["item_id"]) == N_ITEMS


@pytest.mark.usefixtures("ray_local")
def test_a_training_can_start_from_an_earlier_runs_model_with_new_items(tmp_path: Path) -> None:
    """train.init_from through Ray Train: one step at a learning rate too small to move
    anything leaves the earlier model's rows in place and the new items' rows copied."""
    from mtmh.model.inputs import load_item_tables
    from mtmh.model.train_loop import fit
    from mtmh.model.warm_start import ID_ROWS, content_nearest

    base = write_tiny_run(tmp_path / "base", N_ITEMS - 4)
    assert fit(_train_cfg("train.max_steps=4"), base).error is None
    before = torch.load(base / "models" / "mtmh" / "model.pt")[ID_ROWS]
    grown = write_tiny_run(tmp_path / "grown", N_ITEMS)
    cfg = _train_cfg(f"train.init_from={base}", "train.max_steps=1", "train.lr=1e-12")
    assert fit(cfg, grown).error is None
    after = torch.load(grown / "models" / "mtmh" / "model.pt")[ID_ROWS]
    assert after.shape == (N_ITEMS, 8)
    torch.testing.assert_close(after[: N_ITEMS - 4], before, atol=1e-6, rtol=0)
    content = load_item_tables(grown, teacher=True).teacher
    assert content is not None
    nearest = content_nearest(content, N_ITEMS - 4)
    torch.testing.assert_close(after[N_ITEMS - 4 :], before[nearest], atol=1e-6, rtol=0)


@pytest.mark.usefixtures("ray_local")
def test_a_failed_worker_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from mtmh.model.train_loop import fit

    run = write_tiny_run(tmp_path / "run", N_ITEMS)
    marker = tmp_path / "failed-once"
    cfg = _train_cfg("train.epochs=2", "train.checkpoint_every=4", "model.variant=itemcf")
    result = fit(cfg, run, fail_at_step=10, fail_marker=str(marker))
    assert marker.exists(), "the planned failure did not happen"
    assert result.error is None
    # 512 pairs / 32 = 16 steps per epoch, 2 epochs: the same 32 steps as an unbroken run.
    assert result.metrics["step"] == 32
    lines = (run / "models" / "itemcf" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    # Step 10 was reported before the failure and again after resuming from step 8.
    assert steps.count(10) == 2 and steps.count(8) == 1


def test_every_rank_of_a_slot_takes_the_same_variant_in_any_interleaving() -> None:
    from mtmh.model.slots import VariantQueue

    queue = VariantQueue(["mtmh", "dat", "itemcf"])
    assert queue.take(0) == queue.take(0) == "mtmh"  # two ranks of slot 0
    assert queue.take(1) == "dat"
    queue.finish(0, "mtmh", None)  # rank 1 of slot 0 ends first and takes the next variant
    assert queue.take(0) == "itemcf"
    queue.finish(0, "mtmh", {"step": 3})  # rank 0's finish of mtmh frees nothing more
    assert queue.take(0) == "itemcf"
    assert queue.status(0) == ([("mtmh", {"step": 3})], 0, 2)
    queue.finish(1, "dat", {"step": 5})
    assert queue.take(1) is None and queue.held_by(0) == "itemcf"
    assert queue.status(1) == ([("dat", {"step": 5})], 0, 1)


def test_slots_refuse_trainings_that_need_other_worker_groups() -> None:
    from mtmh.model.slots import slot_train_config

    same = {v: _train_cfg(f"model.variant={v}") for v in ("itemcf", "mtmh")}
    assert slot_train_config(same) == same["itemcf"].train
    other = {**same, "neucf": _train_cfg("model.variant=neucf", "train.cpus_per_worker=1.0")}
    with pytest.raises(ValueError, match=r"neucf differs .* in train\.cpus_per_worker"):
        slot_train_config(other)


@pytest.mark.usefixtures("ray_local")
def test_one_slot_trains_variants_one_after_another_as_fit_does(tmp_path: Path) -> None:
    """Two variants through one worker group learn exactly what each learns with a trainer
    of its own, and each gets its own outputs and summary."""
    from mtmh.model.slots import train_in_slots
    from mtmh.model.train_loop import fit

    run = write_tiny_run(tmp_path / "run", N_ITEMS)
    configs = {v: _train_cfg(f"model.variant={v}", "train.epochs=2") for v in ("itemcf", "mtmh")}
    done: list[str] = []
    summaries = train_in_slots(configs, run, 1, done.append)
    assert done == ["itemcf", "mtmh"]
    assert {v: s["steps"] for v, s in summaries.items()} == {"itemcf": 32, "mtmh": 32}
    shared = {v: torch.load(run / "models" / v / "model.pt") for v in configs}
    for v in configs:
        summary = json.loads((run / "models" / v / "summary.json").read_text())
        assert summary["steps"] == 32 and "time/steps_s" in summary["timings"]
    alone = write_tiny_run(tmp_path / "alone", N_ITEMS)
    assert fit(configs["mtmh"], alone).error is None
    own = torch.load(alone / "models" / "mtmh" / "model.pt")
    assert own.keys() == shared["mtmh"].keys()
    for key, value in own.items():
        assert torch.equal(value, shared["mtmh"][key]), key


@pytest.mark.usefixtures("ray_local")
def test_a_failed_slot_resumes_the_variant_it_was_training(tmp_path: Path) -> None:
    from mtmh.model.slots import train_in_slots

    run = write_tiny_run(tmp_path / "run", N_ITEMS)
    marker = tmp_path / "failed-once"
    extra = ("train.epochs=2", "train.checkpoint_every=4")
    configs = {v: _train_cfg(f"model.variant={v}", *extra) for v in ("itemcf", "neucf")}
    failure = {"fail_at_step": 10, "fail_marker": str(marker)}  # the first to reach it fails
    summaries = train_in_slots(configs, run, 1, lambda v: None, **failure)
    assert marker.exists(), "the planned failure did not happen"
    assert {v: s["steps"] for v, s in summaries.items()} == {"itemcf": 32, "neucf": 32}
    steps = {
        v: [json.loads(line)["step"] for line in (run / "models" / v / "metrics.jsonl").open()]
        for v in configs
    }
    # itemcf failed at step 10, after reporting it, and resumed from its checkpoint at step 8;
    # neucf, trained after it in the restarted worker group, started at step 0.
    assert steps["itemcf"].count(10) == 2 and steps["itemcf"].count(8) == 1
    assert steps["neucf"].count(10) == 1 and steps["neucf"][0] == 2


def test_hashed_id_table_is_bounded_and_spreads_neighbouring_ids() -> None:
    from mtmh.model.sparse import SparseNN

    sparse = SparseNN(num_items=1_000_000, id_dim=4, hash_buckets=1000)
    assert sparse.id_table.num_embeddings == 1000
    rows = sparse.id_rows(torch.arange(1000))
    assert int(rows.min()) >= 0 and int(rows.max()) < 1000
    assert len(set(rows.tolist())) > 600  # consecutive ids do not pile into a few rows
    assert sparse(torch.tensor([999_999])).shape == (1, 4)


def test_unknown_variant_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model variant 'mtmx'.*mtmh"):
        get_variant("mtmx")


def test_config_accepts_every_known_variant_and_names_a_bad_one() -> None:
    from mtmh.config import ConfigError

    for name in VARIANTS:
        assert build_config(overrides=[f"model.variant={name}"]).model.variant == name
    with pytest.raises(ConfigError, match=r"model\.variant"):
        build_config(overrides=["model.variant=mtmx"])


def test_itemcf_is_an_id_table_with_no_mlp() -> None:
    """The paper's ItemCF: an id embedding per item and no DNN (what separates it from NeuCF)."""
    tables = _tables()
    tower = ItemTower(get_variant("itemcf"), tables, _cfg())
    names = [name for name, _ in tower.named_parameters()]
    assert names == ["sparse.id_table.weight"]
    assert tower.sparse.id_table.weight.shape == (N_ITEMS, 8)  # model.dim wide
    ids = torch.tensor([0, 5, 7])
    row = tower.sparse.id_table.weight[ids]
    torch.testing.assert_close(tower(ids)["engagement"], row / row.norm(dim=1, keepdim=True))
    neucf = ItemTower(get_variant("neucf"), tables, _cfg())
    assert any(name.startswith("bottom.") for name, _ in neucf.named_parameters())


def test_side_feature_tables_start_at_the_id_tables_scale() -> None:
    from mtmh.model.sparse import INIT_STD, SparseNN

    torch.manual_seed(0)
    sparse = SparseNN(num_items=5000, id_dim=64, categorical_cardinalities=[8, 2000], cat_dim=64)
    for table in (sparse.id_table, *sparse.cat_tables):
        std = float(table.weight.detach().std())
        assert abs(std - INIT_STD) < 0.2 * INIT_STD, std


def test_sim_pair_weights_change_the_loss_and_favour_content_close_pairs() -> None:
    tables = _tables()
    trig, tgt = _pairs()
    negatives = torch.tensor([3, 11, 20])
    losses = {}
    for weighting in ("none", "sim"):
        torch.manual_seed(0)
        cfg = _cfg(pair_weighting=weighting)
        tower = ItemTower(get_variant("mtmh"), tables, cfg)
        task = RetrievalTask(tower, cfg, _uniform(), tables.teacher)
        losses[weighting] = task(trig, tgt, negatives)
    assert not torch.allclose(losses["none"]["loss"], losses["sim"]["loss"])
    weights = task.pair_weights(trig, tgt)
    assert weights is not None
    cos = (torch.as_tensor(tables.teacher)[trig] * torch.as_tensor(tables.teacher)[tgt]).sum(1)
    torch.testing.assert_close(weights, 1.0 + cos.clamp(min=0.0))
    # A pair whose items are closer in content space weighs at least as much.
    order = torch.argsort(cos)
    assert (weights[order].diff() >= 0).all()


def test_the_sampler_owns_the_log_q_of_its_negatives() -> None:
    from mtmh.model.negatives import MixedNegatives

    log_pop = np.log(np.full(N_ITEMS, 1.0 / N_ITEMS, np.float32))
    sampler = MixedNegatives(log_pop, num_random=6, seed=3)
    a, b = sampler.sample(rank=0, step=7), sampler.sample(rank=0, step=7)
    assert torch.equal(a, b) and len(a) == 6  # a resumed worker draws the same negatives
    assert not torch.equal(a, sampler.sample(rank=1, step=7))
    pos = torch.tensor([1, 2, 3, 4])
    log_q = sampler.log_q(pos, len(a))
    # In-batch: B * p_j; uniform random: L / N.
    torch.testing.assert_close(log_q[:4], torch.full((4,), float(np.log(4 / N_ITEMS))))
    torch.testing.assert_close(log_q[4:], torch.full((6,), float(np.log(6 / N_ITEMS))))
    # The task corrects its logits with this sampler's log_q, not its own copy.
    cfg = _cfg(pair_weighting="none")
    task = RetrievalTask(ItemTower(get_variant("neucf"), _tables(), cfg), cfg, sampler)
    assert task.negatives is sampler


def test_train_step_lowers_the_loss_on_a_fixed_batch() -> None:
    from mtmh.model.step import train_step

    tables = _tables()
    torch.manual_seed(0)
    cfg = _cfg()
    tower = ItemTower(get_variant("mtmh"), tables, cfg)
    task = RetrievalTask(tower, cfg, _uniform(), tables.teacher)
    opt = torch.optim.Adam(task.parameters(), lr=0.01)
    trig, tgt = _pairs()
    negatives = torch.tensor([3, 11, 20])
    batch = {"trigger_id": trig, "target_id": tgt, "count": torch.ones(len(trig)) * 3}
    first = train_step(task, opt, batch, negatives)["loss"].item()
    for _ in range(20):
        last = train_step(task, opt, batch, negatives)["loss"].item()
    assert last < first


def test_the_reporter_writes_every_report_every_and_tells_ray_only_with_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Ray Train v2 report waits for the controller's next look (every 2 s): a row to Ray
    # every few steps would throttle training, so only checkpoint, epoch and final rows go.
    import ray.train

    from mtmh.model.harness import EarlyStopping, Progress, Reporter

    sent: list[tuple[dict[str, float], object]] = []
    monkeypatch.setattr(
        ray.train, "report", lambda row, checkpoint, **_: sent.append((row, checkpoint))
    )
    tc = build_config(overrides=["train.report_every=2", "train.checkpoint_every=4"]).train
    path = tmp_path / "metrics.jsonl"
    reporter = Reporter(tc, path, checkpoint=lambda: "ckpt")
    progress = Progress(EarlyStopping(patience=1))
    losses = {"loss": torch.tensor(1.0)}
    for _ in range(9):
        progress.step += 1
        reporter.after_step(progress, pairs=8, losses=losses)
    reporter.after_epoch(progress, 0, {"val/score": 0.5})
    reporter.final(progress, 0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 9, 9]  # every 2nd step, epoch, tail
    assert [(row["step"], ckpt) for row, ckpt in sent] == [
        (4, "ckpt"),
        (8, "ckpt"),
        (9, "ckpt"),
        (9, "ckpt"),
    ]
    assert sent[-1][0]["final"] == 1.0 and "time/reports_s" in sent[-1][0]
