"""cluster.yaml's node types, checked by Ray, and the fake-provider config made from them.

`cluster.yaml` (AWS) is the one description of the cluster's node types: a CPU head that takes
no tasks and an autoscaling group of GPU workers. `cluster_fake.yaml` is generated from it for
Ray's fake multi-node provider, which starts "nodes" as extra raylets on this machine, so the
autoscaler can be watched adding and removing them without a cloud:

    python -m mtmh.cluster_config cluster.yaml > cluster_fake.yaml     # regenerate
    RAY_FAKE_CLUSTER=1 ray start --head --num-cpus=0 --autoscaling-config=cluster_fake.yaml

The fake config keeps every worker type's name, resources (GPUs included: a fake node declares
them, nothing checks for a device) and min_workers. It caps max_workers (each fake node is a
raylet and its agents on the one machine) and shortens the idle timeout so a scale-down is
seen in seconds. The head type is renamed to the provider's fixed `ray.head.default`.
tests/test_deploy_configs.py checks that the committed file is what this module generates.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from mtmh.config import ConfigError

FAKE_HEAD_TYPE = "ray.head.default"  # ray.autoscaler._private.fake_multi_node's head type
FAKE_MAX_WORKERS = 2  # per worker type: every fake node is a raylet on this machine
FAKE_IDLE_TIMEOUT_MINUTES = 0.25


def load_cluster_config(path: Path) -> dict[str, Any]:
    """A cluster launcher config, validated by Ray's own schema (`validate_config`)."""
    config = yaml.safe_load(Path(path).read_text())
    validate_cluster_config(config, str(path))
    return config


def validate_cluster_config(config: dict[str, Any], name: str = "cluster config") -> None:
    """Ray's validation of a launcher/autoscaler config (its JSON schema and the checks
    `ray up` and the autoscaler make), plus the node-type references the schema cannot see."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        if config.get("provider", {}).get("type") == "fake_multinode":
            # Ray's wheel lacks this provider's defaults file (prepare_config would open it):
            # the generated config carries every field itself.
            validate_config(config)
        else:
            validate_config(prepare_config(config))  # as `ray up` does: defaults filled in
    except (jsonschema.ValidationError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{name}: {getattr(e, 'message', e)}") from e
    types = config["available_node_types"]
    if config["head_node_type"] not in types:
        raise ConfigError(f"{name}: head_node_type {config['head_node_type']!r} is not a node type")
    for node_type, spec in types.items():
        if spec.get("min_workers", 0) > spec.get("max_workers", config["max_workers"]):
            raise ConfigError(f"{name}: {node_type} has min_workers above max_workers")


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The node types other than the head's."""
    head = config["head_node_type"]
    return {k: v for k, v in config["available_node_types"].items() if k != head}


def fake_cluster_config(
    config: dict[str, Any],
    *,
    max_workers: int = FAKE_MAX_WORKERS,
    idle_timeout_minutes: float = FAKE_IDLE_TIMEOUT_MINUTES,
    gcs_address: str | None = None,
) -> dict[str, Any]:
    """The fake multi-node provider's config with `config`'s node types.

    `gcs_address` is the head's GCS (host:port); None means the provider's default, port
    6379 on this machine (a head started with `ray start --head` and no --port)."""
    head = config["available_node_types"][config["head_node_type"]]
    workers: dict[str, Any] = {}
    for name, spec in worker_types(config).items():
        workers[name] = {
            "resources": copy.deepcopy(spec["resources"]),
            "node_config": {},
            "min_workers": spec.get("min_workers", 0),
            "max_workers": min(spec.get("max_workers", config["max_workers"]), max_workers),
        }
    provider: dict[str, Any] = {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    }
    if gcs_address:
        provider["gcs_address"] = gcs_address
    return {
        "cluster_name": f"{config['cluster_name']}-fake",
        "max_workers": sum(w["max_workers"] for w in workers.values()),
        "upscaling_speed": config.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": provider,
        "auth": {},
        "available_node_types": {
            FAKE_HEAD_TYPE: {
                "resources": copy.deepcopy(head.get("resources", {})),
                "node_config": {},
                "max_workers": 0,
            },
            **workers,
        },
        "head_node_type": FAKE_HEAD_TYPE,
        # The launcher's node-setup fields, empty: a fake node is a raylet on this machine.
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


HEADER = """\
# Generated by `python -m mtmh.cluster_config cluster.yaml > cluster_fake.yaml`: cluster.yaml's
# node types for Ray's fake multi-node provider (extra raylets on this machine, fake GPUs).
# Do not edit; edit cluster.yaml and regenerate (tests/test_deploy_configs.py checks it).
#
#   RAY_FAKE_CLUSTER=1 ray start --head --num-cpus=0 --autoscaling-config=cluster_fake.yaml
"""


def render_fake_config(config: dict[str, Any]) -> str:
    """cluster_fake.yaml's text for `config`."""
    return HEADER + yaml.safe_dump(fake_cluster_config(config), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtmh.cluster_config",
        description="Write the fake multi-node provider config for a cluster.yaml to stdout.",
    )
    parser.add_argument("cluster_yaml", type=Path, help="a Ray cluster launcher config")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render_fake_config(load_cluster_config(args.cluster_yaml)))
    except (ConfigError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
