"""The platform on a real multi-node Ray cluster on this machine (`make test-cluster`).

One cluster of three nodes, started with `ray start` as in cluster.yaml: a head that takes no
tasks (CPU 0) and two 2-CPU workers, so every task and actor runs on a node other than the
driver's. Every job goes through `ray job submit --working-dir .`; artifacts go to absolute
paths that every node sees. Then a second cluster, under Ray's fake multi-node autoscaler with
cluster.yaml's node types (cluster_fake.yaml), shows GPU work adding nodes and idle nodes going.

The tests run in order and share the first cluster; each fault is one test:
- a worker node killed in the middle of training (TorchTrainer resumes from its checkpoint on
  what is left, with the same total number of steps),
- the pipeline's driver killed (the job fails; resubmitted, it skips the finished stages),
- a Serve replica killed under load (the failed requests are at most the requests in flight).

Timings and outcomes go to $MTMH_CLUSTER_REPORT (default runs/cluster-test): timeline.json and
timeline.md, recorded in docs/cluster.md.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtmh.cluster_config import fake_cluster_config, load_cluster_config
from tests.local_cluster import LocalCluster, free_port, wait_for
from tests.tiny_data import TINY_SYNTHETIC

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TINY_SYNTHETIC, "pipeline.variants=[mtmh]", "eval.max_users=100"]
TRAIN_STEPS = 240  # the fault test's training: long enough to be killed half way
TRAIN = [
    "train.num_workers=2",
    "train.cpus_per_worker=0.5",
    "train.checkpoint_every=20",
    "train.report_every=10",
    f"train.max_steps={TRAIN_STEPS}",
    "train.epochs=20",
    "train.patience=20",
    "holdout.users=0",
]
JOBS_RUN = "jobs"  # prepare, encode, train and sweep, each its own job
PIPELINE_RUN = "pipeline"  # the pipeline job (killed once), then Serve
SWEEP = ["sweep.w_r_values=[0.5]", "sweep.seeds=[0]", "sweep.max_concurrent_trials=1"]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


class Timeline:
    """Events with their time since the cluster started, written as JSON and markdown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.t0 = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    def event(self, what: str, **data: Any) -> None:
        self.events.append({"t_s": round(time.monotonic() - self.t0, 1), "event": what, **data})
        self.write()

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"events": self.events, "results": self.results}
        (self.folder / "timeline.json").write_text(json.dumps(doc, indent=2) + "\n")
        lines = ["| t (s) | event | details |", "|---:|---|---|"]
        for e in self.events:
            extra = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t_s", "event"))
            lines.append(f"| {e['t_s']} | {e['event']} | {extra} |")
        lines += ["", "```json", json.dumps(self.results, indent=2), "```", ""]
        (self.folder / "timeline.md").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def timeline() -> Iterator[Timeline]:
    folder = Path(os.environ.get("MTMH_CLUSTER_REPORT", ROOT / "runs" / "cluster-test"))
    recorded = Timeline(folder)
    yield recorded
    recorded.write()  # the last test's results come after its last event


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, timeline: Timeline) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    try:
        c.start_head(num_cpus=0)  # as cluster.yaml's head: drivers and Serve's control only
        for name in ("w1", "w2"):
            c.add_worker(name, num_cpus=2, resources={f"mtmh_{name}": 1})
        wait_for("three live nodes", lambda: len(c.alive_nodes()) == 3, 120)
        timeline.event("cluster up", nodes=3)
        c.connect()
        yield c
    finally:
        import ray

        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")  # absolute: every node sees it


class Jobs:
    """`ray job submit --working-dir .` from the repository root, and the Jobs SDK to watch."""

    def __init__(self, cluster: LocalCluster) -> None:
        from ray.job_submission import JobSubmissionClient

        self.cluster = cluster
        self.client = JobSubmissionClient(cluster.dashboard_url)
        self.count = 0

    def submit(self, *entrypoint: str, wait: bool = True) -> str:
        self.count += 1
        job_id = f"mtmh-{self.count}-{int(time.time())}"
        self.cluster.cli(
            "ray",
            "job",
            "submit",
            f"--address={self.cluster.dashboard_url}",
            "--working-dir",
            ".",
            f"--submission-id={job_id}",
            "--no-wait",
            "--",
            *entrypoint,
            cwd=ROOT,
        )
        if wait:
            self.wait(job_id)
        return job_id

    def status(self, job_id: str) -> str:
        return str(self.client.get_job_status(job_id).value)

    def wait(self, job_id: str, expect: str = "SUCCEEDED", timeout: float = 900) -> str:
        final = {"SUCCEEDED", "FAILED", "STOPPED"}
        status = wait_for(
            f"job {job_id}", lambda: (s := self.status(job_id)) in final and s, timeout, every=2
        )
        logs = self.client.get_job_logs(job_id)
        assert status == expect, f"job {job_id}: {status}\n{logs[-4000:]}"
        return logs


@pytest.fixture(scope="module")
def jobs(cluster: LocalCluster) -> Jobs:
    return Jobs(cluster)


def test_prepare_and_encode_jobs_run_their_tasks_on_the_worker_nodes(
    cluster: LocalCluster, jobs: Jobs, runs: Path, timeline: Timeline
) -> None:
    run = runs / JOBS_RUN
    t0 = time.monotonic()
    jobs.submit("python", "ray_jobs/prepare_data.py", "--out", str(run), *sets(TINY))
    timeline.event("job prepare succeeded", seconds=round(time.monotonic() - t0))
    t0 = time.monotonic()
    jobs.submit("python", "ray_jobs/encode_content.py", "--run", str(run))
    timeline.event("job encode succeeded", seconds=round(time.monotonic() - t0))
    assert (run / "data" / "pairs").is_dir()
    assert (run / "content" / "item_embeddings.parquet").is_file()

    # The head has no CPUs: the encode's actors ran on the workers, from the uploaded code.
    from ray.util.state import list_actors

    embedder = "MapWorker(MapBatches(ItemContentEmbedder))"
    actors = list_actors(
        filters=[("class_name", "=", embedder)],
        detail=True,
        limit=1000,
        raise_on_missing_output=False,
        address=cluster.gcs_address,
    )
    head = next(n["node_id"] for n in cluster.alive_nodes() if n["is_head_node"])
    assert actors and all(a["node_id"] != head for a in actors), actors
    timeline.results["encode_actor_nodes"] = len({a["node_id"] for a in actors})


def test_worker_node_killed_mid_training_resumes_from_checkpoint(
    cluster: LocalCluster, jobs: Jobs, runs: Path, timeline: Timeline
) -> None:
    from ray.util.state import list_actors

    run = runs / JOBS_RUN
    metrics = run / "models" / "mtmh" / "metrics.jsonl"
    t0 = time.monotonic()
    job = jobs.submit(
        "python",
        "ray_jobs/train.py",
        "--run",
        str(run),
        "--variant",
        "mtmh",
        *sets(TRAIN),
        wait=False,
    )

    def step_reached() -> int:
        rows = metrics.read_text().splitlines() if metrics.is_file() else []
        return max((json.loads(r)["step"] for r in rows), default=0)

    wait_for("training to pass its second checkpoint", lambda: step_reached() >= 45, 600, 0.2)
    workers = list_actors(
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
        detail=True,
        raise_on_missing_output=False,
        address=cluster.gcs_address,
    )
    by_node = {n["node_id"]: n for n in cluster.alive_nodes()}
    victim_node = by_node[workers[0]["node_id"]]
    victim = next(
        k.removeprefix("mtmh_") for k in victim_node["resources_total"] if k.startswith("mtmh_")
    )
    at_step = step_reached()
    cluster.kill_node(victim)
    on_it = sum(w["node_id"] == victim_node["node_id"] for w in workers)
    timeline.event(
        "worker node killed during training", node=victim, step=at_step, train_workers_on_it=on_it
    )
    jobs.wait(job)
    timeline.event("training finished on the remaining nodes", seconds=round(time.monotonic() - t0))
    rows = [json.loads(r) for r in metrics.read_text().splitlines()]
    # Every step after the last checkpoint before the kill was trained twice (metrics rows
    # repeat), and the run still ends at exactly TRAIN_STEPS.
    assert rows[-1]["step"] == TRAIN_STEPS
    steps = [r["step"] for r in rows]
    restarted = any(b <= a for a, b in itertools.pairwise(steps))
    log = (run / "logs" / "train-mtmh.log").read_text()
    assert "resumed at step" in log, log[-3000:]
    resumed = sorted({int(s) for s in re.findall(r"resumed at step (\d+)", log)})
    timeline.results["training_fault"] = {
        "killed_at_step": at_step,
        "resumed_at_steps": resumed,
        "final_step": rows[-1]["step"],
        "metrics_rows_repeat": restarted,
    }
    assert resumed and all(0 < s <= at_step for s in resumed)
    # A machine replaces the lost one, as an autoscaler would.
    cluster.add_worker("w3", num_cpus=2, resources={"mtmh_w3": 1})
    timeline.event("replacement node joined", nodes=len(cluster.alive_nodes()))


def test_a_small_sweep_runs_as_a_job(jobs: Jobs, runs: Path, timeline: Timeline) -> None:
    run = runs / JOBS_RUN
    t0 = time.monotonic()
    jobs.submit("python", "tune/sweep_wr.py", "--run", str(run), *sets(SWEEP))
    timeline.event("job sweep succeeded", seconds=round(time.monotonic() - t0))
    trials = json.loads((run / "tune" / "wr_sweep.json").read_text())
    assert [(t["w_r"], t["status"]) for t in trials] == [(0.5, "evaluated")]
    assert 0.0 <= trials[0]["metrics"]["recall@500"] <= 1.0


def test_killed_pipeline_driver_fails_the_job_and_a_resubmission_resumes(
    cluster: LocalCluster, jobs: Jobs, runs: Path, timeline: Timeline
) -> None:
    run = runs / PIPELINE_RUN
    entry = ["python", "ray_jobs/pipeline.py", "--out", str(run), *sets(TINY)]
    t0 = time.monotonic()
    job = jobs.submit(*entry, wait=False)
    wait_for(
        "the pipeline's encode stage to finish",
        lambda: (run / "content" / "stage.json").is_file(),
        900,
        1,
    )
    driver = jobs.client.get_job_info(job).driver_info
    assert driver is not None and driver.pid
    os.kill(int(driver.pid), 9)
    timeline.event("pipeline driver killed after encode", pid=driver.pid)
    jobs.wait(job, expect="FAILED")
    timeline.event("job reported FAILED", seconds=round(time.monotonic() - t0))
    t0 = time.monotonic()
    logs = jobs.wait(jobs.submit(*entry, wait=False))
    timeline.event("resubmitted pipeline succeeded", seconds=round(time.monotonic() - t0))
    skipped = next(ln for ln in logs.splitlines() if "current, skipped:" in ln)
    assert "prepare" in skipped and "encode" in skipped, logs[-3000:]
    timeline.results["driver_fault"] = {"resubmission": skipped.strip()}
    assert (run / "report.json").is_file()


# -- Serve -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_url(cluster: LocalCluster, runs: Path, timeline: Timeline) -> Iterator[str]:
    """serve_app/config.yaml deployed with `serve deploy`, for one machine: the proxy on the
    head only (every node's proxy would bind the same port here), a free port, the run's
    absolute path, and autoscaling delays short enough to watch in a test."""
    config = yaml.safe_load((ROOT / "serve_app" / "config.yaml").read_text())
    port = free_port()
    config["proxy_location"] = "HeadOnly"
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    for d in app["deployments"]:
        if d["name"] == "Ingress":
            d["user_config"]["run_dir"] = str(runs / PIPELINE_RUN)
        d["autoscaling_config"].update(upscale_delay_s=1, downscale_delay_s=8)
        if d["name"] == "AnnEngagement":
            d["autoscaling_config"].update(target_ongoing_requests=1, max_replicas=3)
    path = cluster.root / "serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.monotonic()
    cluster.cli("serve", "deploy", str(path), f"--address={cluster.dashboard_url}")
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for("the Serve app to answer", healthy, 300, 1)
    timeline.event("serve deploy answered", seconds=round(time.monotonic() - t0))
    yield url
    cluster.cli("serve", "shutdown", "-y", f"--address={cluster.dashboard_url}", check=False)


def post(url: str, body: dict[str, Any], timeout: float = 30) -> int:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0  # no answer at all


class Load:
    """`concurrency` clients sending /i2i requests back to back until stopped."""

    def __init__(self, url: str, concurrency: int, num_items: int) -> None:
        self.codes: Counter[int] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(url, i, num_items))
            for i in range(concurrency)
        ]

    def _client(self, url: str, seed: int, num_items: int) -> None:
        i = seed
        while not self.stop.is_set():
            code = post(f"{url}/i2i", {"item_id": i % num_items, "k": 20})
            with self.lock:
                self.codes[code] += 1
            i += 7

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def replicas(deployment: str) -> int:
    from ray import serve

    app = serve.status().applications["mtmh"]
    return sum(app.deployments[deployment].replica_states.values())


def test_serve_answers_on_the_cluster_and_autoscales_under_a_burst(
    serve_url: str, timeline: Timeline
) -> None:
    assert post(f"{serve_url}/i2i", {"item_id": 0, "k": 20}) == 200
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with Load(serve_url, concurrency=12, num_items=300) as load:
        peak = wait_for(
            "AnnEngagement to scale past one replica",
            lambda: (n := replicas("AnnEngagement")) > 1 and n,
            120,
        )
        up_s = time.monotonic() - t0
        time.sleep(5)
        peak = max(peak, replicas("AnnEngagement"))
    stopped = time.monotonic()
    timeline.event("serve burst: AnnEngagement scaled up", replicas=peak, after_s=round(up_s, 1))
    wait_for(
        "AnnEngagement to scale back to one replica",
        lambda: samples.append((time.monotonic() - t0, n := replicas("AnnEngagement"))) or n == 1,
        180,
        1,
    )
    down_s = time.monotonic() - stopped
    timeline.event("serve burst over: back to 1 replica", after_s=round(down_s, 1))
    timeline.results["serve_autoscaling"] = {
        "clients": 12,
        "peak_replicas": peak,
        "scale_up_s": round(up_s, 1),
        "scale_down_s_after_load": round(down_s, 1),
        "codes": dict(load.codes),
    }
    assert set(load.codes) == {200}, load.codes


def test_a_replica_killed_under_load_fails_at_most_the_requests_in_flight(
    cluster: LocalCluster, serve_url: str, timeline: Timeline
) -> None:
    import ray
    from ray.util.state import list_actors

    concurrency = 8
    with Load(serve_url, concurrency=concurrency, num_items=300) as load:
        time.sleep(3)
        replica = "ServeReplica:mtmh:AnnEngagement"
        victim = list_actors(
            filters=[("class_name", "=", replica), ("state", "=", "ALIVE")],
            detail=True,
            address=cluster.gcs_address,
        )[0]
        ray.kill(ray.get_actor(victim["name"], namespace="serve"), no_restart=True)
        timeline.event("AnnEngagement replica killed under load", clients=concurrency)

        def victim_dead() -> bool:
            rows = list_actors(
                filters=[("actor_id", "=", victim["actor_id"])],
                detail=True,
                address=cluster.gcs_address,
            )
            return bool(rows) and rows[0]["state"] == "DEAD"

        wait_for("the killed replica to be dead", victim_dead, 30)
        time.sleep(10)
        recovered = wait_for(
            "a healthy AnnEngagement replica", lambda: replicas("AnnEngagement") >= 1, 60
        )
    failed = sum(n for code, n in load.codes.items() if code != 200)
    timeline.results["replica_fault"] = {
        "clients": concurrency,
        "codes": dict(load.codes),
        "failed": failed,
        "bound": concurrency,
    }
    timeline.event("replica fault outcome", failed=failed, ok=load.codes[200])
    # Only requests already inside the killed replica can fail: at most one per client.
    assert recovered and failed <= concurrency and load.codes[200] > 10 * concurrency, load.codes
    assert post(f"{serve_url}/i2i", {"item_id": 1, "k": 20}) == 200


# -- Autoscaling with Ray's fake multi-node provider -------------------------------------


def test_fake_autoscaler_adds_gpu_workers_for_gpu_work_and_removes_them_when_idle(
    cluster: LocalCluster, tmp_path: Path, timeline: Timeline
) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()  # one cluster at a time on 2 cores
    auto = LocalCluster(tmp_path)
    aws = load_cluster_config(ROOT / "cluster.yaml")
    config = fake_cluster_config(aws, gcs_address=auto.gcs_address)
    (tmp_path / "fake.yaml").write_text(yaml.safe_dump(config))
    gpu_type = "gpu_workers"
    per_node = aws["available_node_types"][gpu_type]["resources"]
    try:
        t0 = time.monotonic()
        auto.start_head(
            num_cpus=0,
            extra=[f"--autoscaling-config={tmp_path / 'fake.yaml'}"],
            env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
        )
        auto.connect()
        assert len(ray.nodes()) == 1  # the head alone: min_workers is 0

        @ray.remote(num_gpus=1)
        def on_a_gpu(seconds: float) -> tuple[str, str]:
            time.sleep(seconds)
            node = ray.get_runtime_context().get_node_id()
            return node, os.environ.get("CUDA_VISIBLE_DEVICES", "")

        start = time.monotonic()
        refs = [on_a_gpu.remote(8) for _ in range(2)]
        counts: list[tuple[float, int]] = []

        def alive() -> int:
            n = sum(1 for x in ray.nodes() if x["Alive"]) - 1
            counts.append((round(time.monotonic() - start, 1), n))
            return n

        wait_for("a gpu_workers node", lambda: alive() >= 1, 180)
        first_s = time.monotonic() - start
        timeline.event("autoscaler: first gpu_workers node up", after_s=round(first_s, 1))
        nodes = ray.get(refs, timeout=300)
        done_s = time.monotonic() - start
        peak = max(n for _, n in [*counts, (0, alive())])
        timeline.event("GPU tasks done", nodes_used=len({n for n, _ in nodes}), peak_workers=peak)
        wait_for("idle gpu_workers nodes to be removed", lambda: alive() == 0, 240, 1)
        gone_s = time.monotonic() - start
        timeline.event("autoscaler: idle workers removed", after_s=round(gone_s, 1))
        gpu_nodes = [x for x in ray.nodes() if x["Resources"].get("GPU")]
        timeline.results["autoscaler"] = {
            "node_type": gpu_type,
            "resources_per_node": per_node,
            "idle_timeout_minutes": config["idle_timeout_minutes"],
            "first_node_s": round(first_s, 1),
            "tasks_done_s": round(done_s, 1),
            "all_removed_s": round(gone_s, 1),
            "peak_workers": peak,
            "workers_used_by_tasks": len({n for n, _ in nodes}),
            "started_s": round(start - t0, 1),
        }
        assert all(cuda != "" for _, cuda in nodes)  # Ray gave each task a (fake) GPU
        assert peak >= 1 and not any(x["Alive"] for x in gpu_nodes)
    finally:
        ray.shutdown()
        auto.shutdown()
