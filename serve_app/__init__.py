"""The online half of MTMH as a Ray Serve application (spec section 6).

    MTMH_RUN=runs/ml-100k serve run serve_app:graph     # development, from the repo root
    serve deploy serve_app/config.yaml                  # a cluster, with autoscaling
    serve deploy serve_app/config_fused.yaml            # the fused mode (serve_app/builder.py)

`graph` is built on first access from MTMH_RUN (default runs/ml-100k, what `make run`
writes) and MTMH_SERVE_MODE (graph or fused; default graph), so importing this package never
needs a run directory.
"""

from __future__ import annotations

import os
from typing import Any

from serve_app.builder import GraphArgs, build

__all__ = ["GraphArgs", "build", "graph"]


def __getattr__(name: str) -> Any:
    if name == "graph":
        return build(
            {
                "run_dir": os.environ.get("MTMH_RUN", "runs/ml-100k"),
                "mode": os.environ.get("MTMH_SERVE_MODE", "graph"),
            }
        )
    raise AttributeError(f"module 'serve_app' has no attribute {name!r}")
