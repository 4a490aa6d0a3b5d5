"""One progress bar for every long job (samples, masks, grids, eval, motion, video, batch).

Drawn by ``rich`` on stderr, so stdout stays free for results: a live bar with rate
and ETA on a terminal, nothing when disabled. Library code takes an optional
``progress`` callback ``(advance, text)``; commands make one with :func:`progress_bar`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Progress", "progress_bar", "show_progress"]


class Progress:
    """What a long job calls as it goes: ``progress.advance(count, text)``."""

    def __init__(self, bar=None, task=None):
        self._bar, self._task = bar, task
        self.done = 0

    def advance(self, count: int = 1, text: str | None = None) -> None:
        self.done += count
        if self._bar is not None:
            fields = {} if text is None else {"description": text}
            self._bar.update(self._task, advance=count, **fields)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def __call__(self, count: int = 1, text: str | None = None) -> None:
        self.advance(count, text)


def show_progress(requested: bool | None = None, json_output: bool = False) -> bool:
    """Whether to draw: as requested, else only on a terminal and not with ``--json``."""
    if requested is not None:
        return bool(requested)
    return sys.stderr.isatty() and not json_output


def _rate_column_class():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second, in the job's own unit."""

        def __init__(self, unit: str):
            super().__init__()
            self.unit = unit

        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} {self.unit}/s")

    return RateColumn


@contextmanager
def progress_bar(
    total: int | None, label: str, *, enabled: bool = True, unit: str = "items"
) -> Iterator[Progress]:
    """A rich progress bar on stderr (count, percent, rate, ETA) for ``total`` steps
    (``None``: unknown length); a silent :class:`Progress` when not ``enabled``."""
    if not enabled:
        yield Progress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    _RateColumn = _rate_column_class()  # noqa: N806 - a class, built after rich imports

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    with RichProgress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield Progress(bar, task)
