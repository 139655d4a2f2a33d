"""A run's versions on disk: which one is served, promotion and rollback (mtmh/versions.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtmh.jobs.versions import main as versions_main
from mtmh.versions import (
    VersionError,
    made_versions,
    next_version,
    promote,
    read_version,
    rollback,
    serving_dir,
    serving_version,
    version_dir,
    write_version,
)


def _made(root: Path, number: int) -> None:
    version_dir(root, number).mkdir(parents=True)
    write_version(root, number, {"version": number, "made_from": number - 1, "promoted": False})


def test_a_run_never_updated_serves_itself(tmp_path: Path) -> None:
    assert serving_version(tmp_path) == 0 and serving_dir(tmp_path) == tmp_path
    assert made_versions(tmp_path) == [0] and next_version(tmp_path) == 1
    assert read_version(tmp_path, 0)["promoted"] is True


def test_promote_then_rollback_walks_back_through_what_was_served(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        _made(tmp_path, n)
    promote(tmp_path, 1, "gate passed")
    promote(tmp_path, 3, "gate passed")  # 2 was made but never served (rejected)
    assert serving_dir(tmp_path) == tmp_path / "versions" / "3"
    assert read_version(tmp_path, 3)["promoted"] and not read_version(tmp_path, 2)["promoted"]

    assert rollback(tmp_path)["version"] == 1  # the newest earlier version that was served
    assert rollback(tmp_path)["version"] == 0
    with pytest.raises(VersionError, match="nothing came before"):
        rollback(tmp_path)
    assert rollback(tmp_path, to=2)["version"] == 2  # by hand, any version
    record = json.loads((tmp_path / "serving.json").read_text())
    assert [e["version"] for e in record["history"]] == [1, 3, 1, 0, 2]
    assert record["history"][-1] == {**record["history"][-1], "previous": 0}
    assert not list(tmp_path.glob("*.tmp"))  # written by rename, nothing left half-done


def test_unknown_versions_are_refused_and_unfinished_ones_are_not_made(tmp_path: Path) -> None:
    _made(tmp_path, 1)
    (tmp_path / "versions" / "2").mkdir()  # an update that stopped before its record
    assert made_versions(tmp_path) == [0, 1] and next_version(tmp_path) == 3
    with pytest.raises(VersionError, match="no version 2 to serve"):
        promote(tmp_path, 2, "by hand")
    with pytest.raises(VersionError, match="already served"):
        rollback(tmp_path, to=0)
    assert serving_version(tmp_path) == 0


def test_the_versions_command_promotes_and_rolls_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mtmh.jobs.rollback import main as rollback_main

    _made(tmp_path, 1)
    assert versions_main([str(tmp_path), "--promote", "1"]) == 0
    assert serving_version(tmp_path) == 1
    assert rollback_main([str(tmp_path)]) == 0
    assert serving_version(tmp_path) == 0
    assert rollback_main([str(tmp_path)]) == 2  # nothing before 0: one line, exit 2
    assert "nothing came before" in capsys.readouterr().err
