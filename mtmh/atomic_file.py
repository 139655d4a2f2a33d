"""Files written whole or not at all.

`write_atomically(path, write)` has `write` fill a temporary file beside `path`, then renames
it over `path`: a reader (a sweep trial, a Serve replica, another stage) sees the old file or
the new one, never a part. The temporary name is unique to the call (`tempfile.mkstemp`), so
writers in several processes or threads of one driver never rename each other's file away.

Example:
    write_atomically(folder / "stats.npz", lambda p: np.savez(p, counts=counts))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` through `write(temporary_path)` and one rename. The temporary file keeps
    `path`'s suffix, so writers that add one when it is missing (np.save, np.savez) do not."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
