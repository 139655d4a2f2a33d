"""serve_app/config.yaml and cluster.yaml are valid for the Ray versions we pin, and address
what the code builds."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.builder import DEPLOYMENTS, FUSED_DEPLOYMENTS, INGRESS_NAME, GraphArgs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("config_file", "mode", "deployments"),
    [("config.yaml", "graph", DEPLOYMENTS), ("config_fused.yaml", "fused", FUSED_DEPLOYMENTS)],
)
def test_serve_configs_are_valid_and_name_every_deployment_of_their_mode(
    config_file: str, mode: str, deployments: tuple[str, ...]
) -> None:
    config = ServeDeploySchema.model_validate(
        yaml.safe_load((ROOT / "serve_app" / config_file).read_text())
    )
    (app,) = config.applications
    assert app.import_path == "serve_app:build"
    args = GraphArgs.model_validate(app.args)  # the builder accepts the config's args
    assert args.mode == mode
    by_name = {d.name: d for d in app.deployments}
    assert set(by_name) == set(deployments)
    for d in by_name.values():
        assert d.autoscaling_config and d.ray_actor_options
        assert d.ray_actor_options.num_cpus < 1  # every deployment fits on 2 cores
    assert set(by_name[INGRESS_NAME[mode]].user_config) == {"run_dir", "model"}


def test_cluster_config_has_an_autoscaling_gpu_group() -> None:
    schema = json.loads(files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(cluster, schema)
    gpu = cluster["available_node_types"]["gpu_workers"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["resources"]["GPU"] >= 1
    assert any(".[gpu]" in cmd for cmd in cluster["setup_commands"])
    assert cluster["head_node_type"] in cluster["available_node_types"]


def test_serve_run_resolves_serve_app_graph_to_an_application() -> None:
    # What `serve run serve_app:graph` does. (A submodule named `graph` once shadowed the
    # lazily built attribute, and the CLI got a module.)
    from ray._common.utils import import_attr
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    app = call_user_app_builder_with_args_if_necessary(import_attr("serve_app:graph"), {})
    assert isinstance(app, Application)


def test_cluster_yaml_passes_rays_own_validation_and_a_bad_field_is_named() -> None:
    from mtmh.cluster_config import load_cluster_config, validate_cluster_config
    from mtmh.config import ConfigError

    cluster = load_cluster_config(ROOT / "cluster.yaml")  # prepare_config + validate_config
    cluster["available_node_types"]["gpu_workers"]["gpus"] = 1
    with pytest.raises(ConfigError, match="'gpus' was unexpected"):
        validate_cluster_config(cluster)


def test_the_fake_provider_config_is_generated_from_cluster_yaml_node_types() -> None:
    from mtmh.cluster_config import (
        FAKE_HEAD_TYPE,
        load_cluster_config,
        render_fake_config,
        validate_cluster_config,
        worker_types,
    )

    aws = load_cluster_config(ROOT / "cluster.yaml")
    committed = (ROOT / "cluster_fake.yaml").read_text()
    assert committed == render_fake_config(aws), "regenerate: python -m mtmh.cluster_config"
    fake = yaml.safe_load(committed)
    validate_cluster_config(fake, "cluster_fake.yaml")
    assert fake["provider"]["type"] == "fake_multinode"
    head = aws["available_node_types"][aws["head_node_type"]]
    assert fake["available_node_types"][FAKE_HEAD_TYPE]["resources"] == head["resources"]
    for name, spec in worker_types(aws).items():
        mirrored = fake["available_node_types"][name]
        assert mirrored["resources"] == spec["resources"]  # GPUs included, as fake GPUs
        assert mirrored["min_workers"] == spec["min_workers"]
        assert 1 <= mirrored["max_workers"] <= spec["max_workers"]
