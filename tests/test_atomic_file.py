"""write_atomically: the old file or the new one, never a part, and no temporary file left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtmh.atomic_file import write_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_atomically(path, lambda p: p.write_text("old"))

    def fails(p: Path) -> None:
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_writers_that_add_a_suffix_write_the_named_file(tmp_path: Path) -> None:
    # np.save and np.savez append .npy / .npz to a name without it.
    write_atomically(tmp_path / "f.npy", lambda p: np.save(p, np.arange(3)))
    write_atomically(tmp_path / "s.npz", lambda p: np.savez(p, a=np.arange(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "s.npz"]
    assert np.load(tmp_path / "f.npy").tolist() == [0, 1, 2]
