"""The pipeline's stage lines on a console: while a stage runs, one live line with a bar, its
count, the time taken and the ETA; when it ends, one line with a tick and its wall time.

On a terminal the live line redraws in place. Elsewhere (a file, CI, `ray job submit` logs)
nothing is drawn live and only the finished lines are printed, one per stage.

Example:
    with StageBoard(console) as board:
        with board.stage("train", total=10) as advance:
            ...
            advance(1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mtmh.progress import shown_on


class StageBoard:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,  # a finished stage is printed as its own line instead
            disable=not console.is_terminal,  # nothing to redraw in a file or a CI log
        )

    def __enter__(self) -> StageBoard:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    @contextmanager
    def stage(self, name: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        """A stage's line; yields `advance(n)`. Steps counted with mtmh.progress.steps inside
        the stage (items embedded, users evaluated) drive the same line."""
        task = self.progress.add_task(name, total=total)
        started = time.perf_counter()
        try:
            with shown_on(self.progress, task):
                yield partial(self.progress.advance, task)
        except BaseException:
            self.progress.remove_task(task)
            self.console.print(f"[red]✗[/red] {name:<10} failed after {_took(started)}")
            raise
        self.progress.remove_task(task)
        self.console.print(f"[green]✓[/green] {name:<10} {_took(started)}")

    def note(self, text: str) -> None:
        self.console.print(f"  [dim]{text}[/dim]")


def _took(started: float) -> str:
    seconds = time.perf_counter() - started
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
