"""What a job prints, and where everything else goes.

A job (each script in ray_jobs/ and tune/) runs inside `run_job`. By default it is quiet:
the terminal gets only what the job means a person to read (its `console`: stage lines,
tables, the paths it wrote), and everything else goes to RUN/logs/<job>.log. That is the
job's own log records, Ray's, the workers' output that Ray streams to the driver, library
warnings and progress bars. With `verbose` (-v), all of it is shown live as well.

Quiet mode works on the process's file descriptors 1 and 2 (and sys.stdout/sys.stderr with
them): Ray's log monitor, its C++ core, tqdm and `warnings` all write there, and each has its
own way to be configured. Pointing both at the log file catches them all, and loses none.
A connection to Ray that the job opened is closed before the descriptors are restored, so
worker output that Ray streams to the driver late still lands in the log file.

A failure prints one line on stderr: the message of a project error (mtmh/errors.py), or
"unexpected TYPE: message" for anything else, followed by the log file to read. The traceback
is in that log file. The exit status is the error's `exit_code` (2 for bad input), or 1.

Example:
    def body(out: JobOutput) -> int:
        out.console.print("hello")
        return 0

    sys.exit(run_job("prepare", Path("runs/ml-100k"), verbose=False, body=body))
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console

from mtmh.errors import MtmhError
from mtmh.progress import shown_to
from mtmh.ray_utils import NO_PROGRESS_BARS

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class JobOutput:
    console: Console  # the terminal: what a person reads
    log_file: Path  # everything else
    verbose: bool


def log_path(run_dir: Path, job: str) -> Path:
    return run_dir / "logs" / f"{job}.log"


@contextmanager
def job_output(run_dir: Path, job: str, verbose: bool) -> Iterator[JobOutput]:
    """Route the process's output for the job's duration (see the module docstring)."""
    log_file = log_path(run_dir, job)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", buffering=1) as log_stream:
        if verbose:
            _configure_logging(logging.INFO, sys.stderr, log_stream)
            console = Console()
            with shown_to(console):
                yield JobOutput(console, log_file, verbose)
            return
        # Ray Data's bars would only be noise in a file (workers get this too: ray_utils).
        os.environ.setdefault(NO_PROGRESS_BARS, "1")
        ray_was_connected = _ray_connected()
        with _descriptors_to(log_stream) as terminal:
            _configure_logging(logging.INFO, sys.stderr)  # fd 2 is the log file now
            console = Console(file=terminal)
            try:
                with shown_to(console):  # a job's own progress bars go to the terminal
                    yield JobOutput(console, log_file, verbose)
            finally:
                if not ray_was_connected:
                    _disconnect_ray()


def run_job(
    job: str,
    run_dir: Path,
    verbose: bool,
    body: Callable[[JobOutput], int],
    expected: tuple[type[Exception], ...] = (),
) -> int:
    """`body`'s exit status; a failure becomes one line on stderr and the log file's path.
    Project errors, FileNotFoundError and `expected` are the user's to act on (their
    message is the line); anything else is reported as unexpected."""
    actionable: tuple[type[Exception], ...] = (MtmhError, FileNotFoundError, *expected)
    with job_output(run_dir, job, verbose) as out:
        try:
            return body(out)
        except actionable as err:  # what the user can act on
            log.exception("%s failed", job)
            message, status = str(err), getattr(err, "exit_code", 2)
        except Exception as err:  # a bug: say so, and where the traceback is
            log.exception("%s failed", job)
            message, status = f"unexpected {type(err).__name__}: {err}", 1
        out.console.file.flush()
    # After the descriptors are restored: stderr is the terminal again.
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    sys.stderr.write(f"error: {first}\n(details: {out.log_file})\n")  # the CLI contract
    return status


def _configure_logging(level: int, *streams: IO[str]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for stream in streams:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become log records: the log file keeps them


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")  # a job that never imported Ray has no connection to end
    return ray is not None and ray.is_initialized()


def _disconnect_ray() -> None:
    """End the connection to Ray that the job opened, while fds 1 and 2 are still the log file.

    The driver prints what Ray streams from workers for as long as it is connected, and that
    can come after the job's body returned: a Ray Train placement-group cleaner actor logged
    "Failed to query Ray Train Controller actor state" to the terminal once the descriptors
    were restored. Left to Ray's atexit hook, the connection outlives the redirect. On a
    cluster this disconnects the driver only; a local Ray the job started is stopped, as it
    would be at exit. A connection that existed before the job (a notebook, a test session)
    is left alone."""
    if _ray_connected():
        import ray

        ray.shutdown()


@contextmanager
def _descriptors_to(log_stream: IO[str]) -> Iterator[IO[str]]:
    """Point fds 1 and 2 at `log_stream`; yields a stream on the original stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        os.dup2(log_stream.fileno(), 1)
        os.dup2(log_stream.fileno(), 2)
        # Python-level streams too, for hosts that replaced sys.stdout/stderr with objects that
        # do not write to fds 1 and 2 (pytest's capture, notebooks).
        with redirect_stdout(log_stream), redirect_stderr(log_stream):
            yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        terminal.close()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
