"""tools/pip_index_args.py: `make install` hands uv the package sources pip is configured with."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "pip_index_args", ROOT / "tools/pip_index_args.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LISTING = """\
:env:.find-links='/env/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'
global.find-links='/opt/wheels'
install.index-url="https://mirror.example/simple"
global.index-url='https://pypi.org/simple'
"""


def test_pip_settings_take_the_winning_section_of_each_setting() -> None:
    settings = _tool().pip_settings(LISTING)
    assert settings == {
        "find-links": "/env/wheels",  # the environment over global
        "constraint": "/etc/pip/constraints.txt",
        "extra-index-url": "file:///opt/a/simple file:///opt/b/simple",
        "index-url": "https://mirror.example/simple",  # install over global
    }


def test_uv_args_pass_every_value_and_choose_among_indexes_as_pip_does() -> None:
    tool = _tool()
    args = tool.uv_args(tool.pip_settings(LISTING))
    assert args == [
        "--index-strategy",
        "unsafe-best-match",
        "--index-url",
        "https://mirror.example/simple",
        "--extra-index-url",
        "file:///opt/a/simple",
        "--extra-index-url",
        "file:///opt/b/simple",
        "--find-links",
        "/env/wheels",
        "--constraint",
        "/etc/pip/constraints.txt",
    ]
    assert tool.uv_args({}) == ["--index-strategy", "unsafe-best-match"]


def test_the_script_reads_this_machines_pip_config() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/pip_index_args.py")],
        capture_output=True,
        text=True,
        check=True,
        env={"PIP_FIND_LINKS": "/x /y", "PATH": "/usr/bin:/bin"},
    ).stdout
    args = shlex.split(out)
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--find-links"] == ["/x", "/y"]
