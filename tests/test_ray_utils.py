"""Starting or joining Ray (mtmh/ray_utils.py) on a machine where another Ray runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.local_cluster import LocalCluster, wait_for

ROOT = Path(__file__).resolve().parents[1]

# What every job does first; prints the GCS address of the Ray it ended up on.
JOB = """
import ray
from mtmh.config import RayConfig
from mtmh.ray_utils import init_ray
init_ray(RayConfig(num_cpus=1, object_store_memory_mb=256))
print(ray.get_runtime_context().gcs_address)
"""


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _job(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", JOB], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_job_starts_its_own_ray_beside_a_ray_start_cluster_and_joins_it_when_told(
    tmp_path: Path,
) -> None:
    # RAY_TMPDIR stands for /tmp: the `ray start` head below writes its address where a plain
    # ray.init() on this machine looks for "the cluster to join" (RAY_TMPDIR/ray).
    machine_tmp = Path(tempfile.mkdtemp(prefix="mtmh-rt-", dir="/tmp"))
    cluster = LocalCluster(tmp_path, temp_dir=machine_tmp / "ray")
    try:
        cluster.start_head(num_cpus=1)
        # `ray start` writes it after the node is up, so a moment after the dashboard answers.
        current = machine_tmp / "ray" / "ray_current_cluster"
        found = wait_for(
            "ray start to record its address",
            lambda: current.is_file() and current.read_text().strip(),
            60,
        )
        assert _port(found) == str(cluster.gcs_port)
        env = {**cluster.env, "RAY_TMPDIR": str(machine_tmp)}
        # No address: a Ray of the job's own, sized by its config (joining the head would
        # refuse num_cpus), and the head is left as it was.
        assert _port(_job(env)) != str(cluster.gcs_port)
        assert len(cluster.alive_nodes()) == 1
        # RAY_ADDRESS, as `ray job submit` sets it: the job joins that cluster.
        assert _port(_job({**env, "RAY_ADDRESS": cluster.gcs_address})) == str(cluster.gcs_port)
    finally:
        cluster.shutdown()
        shutil.rmtree(machine_tmp, ignore_errors=True)


def test_every_worker_keeps_freed_blocks_in_its_heap(ray_local: None) -> None:
    """`ray.malloc_keep_mb` reaches a worker's environment, where glibc reads it at start."""
    import os

    import ray

    from mtmh.ray_utils import malloc_env

    @ray.remote(num_cpus=0.1)
    def worker_env() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in malloc_env(32)}

    assert ray.get(worker_env.remote()) == malloc_env(32)
    assert malloc_env(32)["MALLOC_MMAP_THRESHOLD_"] == str(32 * 1024**2)
    assert malloc_env(None) == {}
