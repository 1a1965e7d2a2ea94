"""Progress of long commands (imports, exports, backups), for the operator who runs them.

Work code reports to a Meter and never knows which one it has:

    meter.stage("checking rows", total=lines, unit="rows")
    meter.update(done)

- On a terminal, `TerminalMeter` draws a rich progress bar on stderr: done of total,
  rate and time left, one line per stage.
- Anywhere else (cron, systemd, CI, a pipe) and with --quiet, `Meter` itself draws
  nothing; the command prints its one summary line at the end (or, with --quiet, nothing).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.text import Text


class Meter:
    """Draws nothing: for library callers, output that is not a terminal, and --quiet."""

    def stage(self, description: str, total: int | None = None, unit: str = "rows") -> None:
        """Begin a new step of the work; `total` is how many units it will do, if known."""

    def update(self, done: int, total: int | None = None) -> None:
        """`done` units of the current stage are done (an absolute count, not a step)."""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop drawing; what was drawn stays on the screen."""


class _Count(ProgressColumn):
    """'120,000/2,400,000'."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(f"{task.completed:,.0f}")
        return Text(f"{task.completed:,.0f}/{task.total:,.0f}")


class _Rate(ProgressColumn):
    """'85,000 rows/s': the recent rate while running, the average once done."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        elapsed = task.elapsed or 0
        if (task.finished or speed is None) and elapsed > 0 and task.completed:
            speed = task.completed / elapsed
        if speed is None:
            return Text("")
        return Text(f"{speed:,.0f} {task.fields.get('unit', '')}/s")


class _Left(ProgressColumn):
    """'0:00:12 left' while running; the time it took once the stage is done."""

    def render(self, task: Task) -> Text:
        if task.finished or task.stop_time is not None:
            return Text(f"in {_clock(task.elapsed or 0)}")
        left = task.time_remaining
        return Text("" if left is None else f"{_clock(left)} left")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class TerminalMeter(Meter):
    """A rich progress bar on a terminal: done of total, rate, time left."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20, complete_style="cyan", finished_style="green"),
            _Count(),
            _Rate(),
            _Left(),
            console=console,
            refresh_per_second=8,
        )
        self.task = None
        self.progress.start()

    def stage(self, description: str, total: int | None = None, unit: str = "rows") -> None:
        self._finish_task()
        self.task = self.progress.add_task(description, total=total, unit=unit)

    def update(self, done: int, total: int | None = None) -> None:
        if self.task is not None:
            if total is not None:
                self.progress.update(self.task, completed=done, total=total)
            else:
                self.progress.update(self.task, completed=done)

    def _finish_task(self) -> None:
        # A finished stage shows its final count; an interrupted one stays where it stopped.
        if self.task is not None:
            self.progress.stop_task(self.task)

    def close(self) -> None:
        self._finish_task()
        self.progress.stop()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


def meter_for(quiet: bool = False, stream: TextIO | None = None) -> Meter:
    """The meter a command should use: a progress bar only on a terminal, never when quiet."""
    stream = sys.stderr if stream is None else stream
    if quiet or not is_terminal(stream):
        return Meter()
    return TerminalMeter(Console(file=stream, force_terminal=True))
