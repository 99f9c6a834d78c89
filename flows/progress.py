"""The one progress display of the command line: a rich bar over items, with an optional note."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Bar:
    """One task of a rich :class:`Progress`: planned, advanced, annotated; messages print above it."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None, note="")

    def plan(self, description: str, total: int) -> None:
        self._progress.update(self._task, description=description, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        """The text right of the bar (e.g. a count of clips made)."""
        self._progress.update(self._task, note=text)

    def print(self, message: str) -> None:
        """A line above the bar (rich markup allowed), without tearing it."""
        self._progress.console.print(message)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Bar]:
    """``with progress_bar("planning") as bar:`` a bar that stays on screen when done."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, transient=False) as progress:
        yield Bar(progress, description)
