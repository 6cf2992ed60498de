"""One progress-bar style for every long step: a rich bar driven by a `(step, done, total)` callback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ProgressCallback = Callable[[str, int, int], None]


@contextmanager
def progress_callback(console: Console, description: str) -> Iterator[ProgressCallback]:
    """Yield a callback that library code calls as `report(step, done, total)`."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        yield report


@contextmanager
def working(description: str) -> Iterator[None]:
    """A pulsing bar with elapsed time on stderr for one long call that cannot report its own progress.

    It writes to stderr so that commands printing JSON keep stdout clean.
    """
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        bar.add_task(description, total=None)
        yield
