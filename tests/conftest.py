"""Shared fixtures: one local Ray per test session, sized for a 2-core machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    import ray

    from mtmh.config import RayConfig
    from mtmh.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=512))
    yield
    ray.shutdown()
