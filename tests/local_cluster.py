"""A multi-node Ray cluster on this machine, started the way a user starts one: `ray start
--head` and `ray start --address` nodes (each its own raylet, resources and processes), driven
by the `ray`, `serve` and `ray job` command lines.

Every node runs `ray start --block` under this process, so a node can be killed alone (its
whole process tree, SIGKILL: a machine lost) and the cluster torn down without `ray stop`,
which would stop every Ray on the machine, other users' included. The cluster has its own temp
dir, so a `ray.init()` elsewhere on the machine does not find and join it, and its own
authentication token (Ray enables token authentication when ~/.ray/auth_token exists; every
node and every CLI call here gets the test's token instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """`check()`'s first truthy value, polled; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    pids: set[int] = field(default_factory=set)  # its process tree, refreshed while alive

    def refresh(self) -> None:
        try:
            root = psutil.Process(self.process.pid)
            self.pids |= {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass


class LocalCluster:
    """A head and worker nodes on this machine (see the module docstring)."""

    def __init__(self, root: Path, temp_dir: Path | None = None) -> None:
        self.root = root
        # Short: Ray's socket paths (TEMP/session_<date>_<pid>/sockets/...) must fit in 107
        # bytes, which a pytest tmp_path does not leave room for.
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="mtmh-ray-", dir="/tmp"))
        token = root / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's python
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "OMP_NUM_THREADS": "1",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: dict[str, Node] = {}
        self.extra_dirs: list[Path] = []
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.gcs_address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"

    # -- nodes ---------------------------------------------------------------------------

    def start_head(
        self, num_cpus: float, extra: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Node:
        args = [
            "--head",
            f"--port={self.gcs_port}",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={num_cpus}",
            *(extra or []),
        ]
        node = self._start("head", args, env)
        wait_for("the head's dashboard (Jobs API)", self._dashboard_up, timeout=120)
        return node

    def add_worker(
        self,
        name: str,
        num_cpus: float,
        resources: dict[str, float] | None = None,
        wait: bool = True,
    ) -> Node:
        # Its own temp dir, as a machine of its own has: a node's runtime-env agent deletes the
        # jobs' working_dir copies it no longer uses, and in a shared dir those would be the
        # copies that jobs on other nodes are still running from.
        temp = Path(tempfile.mkdtemp(prefix=f"mtmh-ray-{name}-", dir="/tmp"))
        self.extra_dirs.append(temp)
        args = [f"--address={self.gcs_address}", f"--num-cpus={num_cpus}", f"--temp-dir={temp}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        before = len(self.alive_nodes())
        node = self._start(name, args, None)
        if wait:
            wait_for(f"node {name} to join", lambda: len(self.alive_nodes()) > before, 120)
        node.refresh()
        return node

    def _start(self, name: str, args: list[str], env: dict[str, str] | None) -> Node:
        log = self.root / f"node-{name}.log"
        # Every node's dashboard agent gets its own ports: the defaults (52365...) are
        # per machine, and another Ray on this machine may hold them.
        cmd = [
            str(VENV_BIN / "ray"),
            "start",
            *args,
            "--block",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        node = Node(name, proc, log)
        self.nodes[name] = node
        return node

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of node `name`, as a lost machine would leave it."""
        node = self.nodes.pop(name)
        node.refresh()
        for pid in node.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Stop this cluster's processes only (never `ray stop`)."""
        for node in self.nodes.values():
            node.refresh()
        pids = {pid for n in self.nodes.values() for pid in n.pids}
        # Processes the raylets started (workers, fake-provider nodes) are in the trees too.
        for node in self.nodes.values():
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in self.nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for node in self.nodes.values():
            node.process.wait(10)
        self.nodes.clear()
        for folder in [self.temp_dir, *self.extra_dirs]:
            shutil.rmtree(folder, ignore_errors=True)

    # -- what the cluster says -----------------------------------------------------------

    def _dashboard_up(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (401 without the token)
        except OSError:
            return False

    def alive_nodes(self) -> list[dict[str, Any]]:
        """`ray list nodes` (the state API) rows of the nodes that are alive."""
        out = self.cli(
            "ray",
            "list",
            "nodes",
            "--format=json",
            "--limit=1000",
            f"--address={self.gcs_address}",
            check=False,
        )
        if out.returncode != 0 or not out.stdout.lstrip().startswith("["):
            return []  # not up yet, or "No resource in the cluster"
        return [n for n in json.loads(out.stdout) if n["state"] == "ALIVE"]

    def cli(
        self, *cmd: str, check: bool = True, timeout: float = 900, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A `ray`/`serve` command line against this cluster, as a user types it."""
        done = subprocess.run(
            [str(VENV_BIN / cmd[0]), *cmd[1:]],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def connect(self) -> None:
        """ray.init() this test process into the cluster (the state API, Serve's handles)."""
        import ray
        from ray._raylet import AuthenticationTokenLoader, Config

        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = self.env["RAY_AUTH_TOKEN_PATH"]
        # Ray reads both once per process: make it read them again (as `ray start` does when
        # it turns token authentication on), since this test process may have used Ray before.
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        ray.init(address=self.gcs_address, log_to_driver=False)
