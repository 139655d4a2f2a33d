"""Starting or joining Ray the same way from every job, tests included."""

from __future__ import annotations

import logging
import os

from mtmh.config import RayConfig

log = logging.getLogger(__name__)
NO_PROGRESS_BARS = "RAY_DATA_DISABLE_PROGRESS_BARS"  # Ray Data's own switch


def malloc_env(keep_mb: int | None) -> dict[str, str]:
    """glibc's environment tunables that keep freed blocks up to `keep_mb` MiB in the heap
    (none for None). The trim threshold rises with it, or the heap's top would go back to the
    kernel at every free. Read when a process starts, so they go to the workers' environment."""
    if keep_mb is None:
        return {}
    return {
        "MALLOC_MMAP_THRESHOLD_": str(keep_mb * 1024**2),
        "MALLOC_TRIM_THRESHOLD_": str(1024**3),
    }


def init_ray(cfg: RayConfig) -> None:
    """Join the cluster named by `cfg.address` or $RAY_ADDRESS (as under `ray job submit`),
    else start a local Ray of the job's own, sized by `cfg`. Threads are capped in every
    worker: on a small machine, BLAS/torch thread pools in each worker oversubscribe the
    cores badly.
    """
    import ray

    if ray.is_initialized():
        return
    threads = str(cfg.omp_num_threads)
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    env = {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.update(malloc_env(cfg.malloc_keep_mb))
    # A quiet job (mtmh/job_output.py) sends the workers' output to a log file, where
    # progress bars are only noise: it sets this, and the workers get it too.
    if os.environ.get(NO_PROGRESS_BARS):
        env[NO_PROGRESS_BARS] = os.environ[NO_PROGRESS_BARS]
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
        log.info("joined Ray at %s", address)
        return
    store = cfg.object_store_memory_mb * 1024**2 if cfg.object_store_memory_mb else None
    # "local": a new Ray of our own. With no address, ray.init() would instead join whatever
    # `ray start` last ran on this machine (its address is in /tmp/ray/ray_current_cluster,
    # and is left there by a cluster that was killed), and then refuse `num_cpus`. Joining a
    # cluster is what `address`/$RAY_ADDRESS are for.
    ray.init(
        address="local",
        num_cpus=cfg.num_cpus,
        object_store_memory=store,
        runtime_env={"env_vars": env},
        include_dashboard=cfg.dashboard,
    )
    log.info("started a local Ray: %s", ray.cluster_resources())
