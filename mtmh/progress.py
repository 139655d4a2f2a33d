"""Progress inside one long step, shown by whoever runs the step.

A step counts its work with `steps(description, total)`, which hands it an `advance(n)`.
Inside the pipeline, the running stage's line shows that count with a bar and an ETA
(mtmh/pipeline.py sets it with `shown_on`); run on its own, the step draws a transient rich bar.

Example:
    with steps("embedding items", total=len(items)) as advance:
        for batch in batches:
            ...
            advance(len(batch))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from rich.progress import Progress, TaskID

# The stage line of the running pipeline, if any: (its display, its task).
_stage: tuple[Progress, TaskID] | None = None


@contextmanager
def shown_on(progress: Progress, task: TaskID) -> Iterator[None]:
    """Steps counted inside this block advance `task` of `progress`."""
    global _stage
    previous, _stage = _stage, (progress, task)
    try:
        yield
    finally:
        _stage = previous


@contextmanager
def steps(description: str, total: float) -> Iterator[Callable[[float], None]]:
    if _stage is not None:
        progress, task = _stage
        progress.update(task, total=total, completed=0)
        yield partial(progress.advance, task)
        return
    with Progress(transient=True) as own:
        yield partial(own.advance, own.add_task(description, total=total))
