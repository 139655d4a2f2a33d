from pathlib import Path

import pytest
import yaml

from mtmh.config import ConfigError, RunConfig, build_config, load_config, save_config


def test_default_config_loads_and_round_trips(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.data.dataset == "ml-100k"
    assert cfg.data.pairs.window == 10
    saved = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(saved) == cfg


def test_the_packaged_default_run_is_the_config_defaults() -> None:
    # One source of defaults: mtmh/config.py. The packaged YAML names only what a run chooses.
    assert load_config() == RunConfig()


def test_a_saved_config_with_renamed_keys_loads_under_the_new_names(tmp_path: Path) -> None:
    old = yaml.safe_load(
        yaml.safe_dump(
            {"data": {"validation": {"min_timestamp": 7}}, "eval": {"fresh_snapshot_every": 4}}
        )
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = load_config(path)
    assert cfg.data.row_bounds.min_timestamp == 7
    assert cfg.train.fresh_snapshot_every == 4
    with pytest.raises(ConfigError, match=r"data\.validation"):  # --set takes new names only
        build_config(overrides=["data.validation.min_timestamp=7"])


def test_overrides_are_typed() -> None:
    cfg = load_config(
        overrides=["data.pairs.window=20", "data.split.t1_fraction=0.7", "data.dataset=synthetic"]
    )
    assert cfg.data.pairs.window == 20
    assert cfg.data.split.t1_fraction == pytest.approx(0.7)
    assert cfg.data.dataset == "synthetic"


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.pairs\.windw: unknown key"):
        build_config(overrides=["data.pairs.windw=3"])


def test_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.t1_fraction"):
        build_config(overrides=["data.split.t1_fraction=1.5"])
    with pytest.raises(ConfigError, match=r"data\.pairs\.window"):
        build_config(overrides=["data.pairs.window=many"])


def test_unknown_dataset_and_missing_cut_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"data\.dataset=.imdb."):
        build_config(overrides=["data.dataset=imdb"])
    with pytest.raises(ConfigError, match=r"split\.cut_timestamp"):
        build_config(overrides=["data.split.mode=timestamp"])


def test_malformed_override_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        build_config(overrides=["data.pairs.window"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_config_is_frozen() -> None:
    cfg = RunConfig()
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass raises FrozenInstanceError
        cfg.seed = 3  # type: ignore[misc]


def test_a_saved_config_with_retired_keys_still_loads(tmp_path: Path) -> None:
    # As an earlier version saved it beside every artifact.
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "preranker": {"history_length": 20, "dim": 64, "epochs": 2},
                "index": {"exact_if_faster": True, "nprobe": 8},
            }
        )
    )
    cfg = load_config(path)
    assert cfg.preranker.epochs == 2 and not hasattr(cfg.preranker, "history_length")
    assert cfg.index.nprobe == 8 and not hasattr(cfg.index, "exact_if_faster")
    with pytest.raises(ConfigError, match="history_length"):
        load_config(overrides=["preranker.history_length=20"])  # still an error when asked for
