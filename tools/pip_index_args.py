"""Print uv's flags for the package sources pip is configured with on this machine.

`make install` installs with uv, which does not read pip's configuration (pip.conf files and
PIP_* variables). This turns what `pip config list` says into the same sources for
`uv pip install`: the index, the extra indexes, the find-links locations and the constraint
files. The environment wins over the `install` section, which wins over `global`, as in pip.

uv chooses among indexes the way pip does (`--index-strategy unsafe-best-match`: the best
version from any of them), so both install the same releases.

    .venv/bin/uv pip install $(python tools/pip_index_args.py) -e '.[cpu,dev]'
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

# pip's setting -> uv's flag; a setting may hold several space-separated values
FLAGS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
SECTIONS = ("global", "install", ":env:")  # later ones win, as in pip
LINE = re.compile(r"^(?P<section>[^.]+)\.(?P<key>[^=]+)=(?P<value>.*)$")


def pip_settings(listing: str) -> dict[str, str]:
    """{setting: value} from `pip config list`, the winning section's value for each."""
    found: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        m = LINE.match(line.strip())
        if m and m["section"] in SECTIONS and m["key"] in FLAGS:
            value = m["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found.setdefault(m["key"], {})[m["section"]] = value
    return {key: next(by[s] for s in reversed(SECTIONS) if s in by) for key, by in found.items()}


def uv_args(settings: dict[str, str]) -> list[str]:
    args = ["--index-strategy", "unsafe-best-match"]
    for key, flag in FLAGS.items():
        for value in settings.get(key, "").split():
            args += [flag, value]
    return args


def main() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    print(shlex.join(uv_args(pip_settings(listing))))


if __name__ == "__main__":
    main()
