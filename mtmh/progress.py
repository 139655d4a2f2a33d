"""Progress inside one long step, shown by whoever runs the step.

A step counts its work with `steps(description, total)`, which hands it an `advance(n)`.
Inside the pipeline, the running stage's line shows that count with a bar and an ETA
(mtmh/pipeline.py sets it with `shown_on`); run on its own, the step draws a transient rich bar
on the job's terminal (`shown_to`, set by mtmh/job_output.py). A step in another thread
while a stage line is live (the pipeline's stages beside the trainings) is only logged: the
line is the running stage's, and a terminal holds one live display. Either way, each tenth of
the work is also a log record, so a job's log file (or a CI log) shows how far it got.

Example:
    with steps("embedding items", total=len(items)) as advance:
        for batch in batches:
            ...
            advance(len(batch))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, TaskID

log = logging.getLogger(__name__)
# The stage line of the running pipeline, if any: (its display, its task, the thread whose
# stage it shows).
_stage: tuple[Progress, TaskID, int] | None = None
_console: Console | None = None  # the running job's terminal


@contextmanager
def shown_to(console: Console) -> Iterator[None]:
    """Steps counted inside this block draw their own bar on `console`."""
    global _console
    previous, _console = _console, console
    try:
        yield
    finally:
        _console = previous


@contextmanager
def shown_on(progress: Progress, task: TaskID) -> Iterator[None]:
    """Steps counted inside this block advance `task` of `progress`."""
    global _stage
    previous, _stage = _stage, (progress, task, threading.get_ident())
    try:
        yield
    finally:
        _stage = previous


@contextmanager
def steps(description: str, total: float) -> Iterator[Callable[[float], None]]:
    done = 0.0
    logged = 0  # tenths of `total` logged so far

    def advance_and_log(bar: Callable[[float], None], n: float) -> None:
        nonlocal done, logged
        bar(n)
        done += n
        tenths = int(10 * done / total) if total else 10
        if tenths > logged:
            logged = tenths
            log.info("%s: %s of %s", description, f"{done:,.0f}", f"{total:,.0f}")

    if _stage is not None:
        progress, task, owner = _stage
        if owner != threading.get_ident():  # another thread's stage is on the line
            yield lambda n: advance_and_log(lambda k: None, n)
            return
        progress.update(task, total=total, completed=0)
        yield lambda n: advance_and_log(lambda k: progress.advance(task, k), n)
        return
    console = _console or Console()
    with Progress(console=console, transient=True, disable=not console.is_terminal) as own:
        task = own.add_task(description, total=total)
        yield lambda n: advance_and_log(lambda k: own.advance(task, k), n)
