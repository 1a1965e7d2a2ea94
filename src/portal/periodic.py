"""A round of work every few seconds in one background task: `portal serve`'s reconcile
and jobs loops. A round that raises is logged and the next round runs as planned."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress


class Periodic:
    """Subclasses set `task_name`, `what` (the log's word for a round) and `log`, and
    write round(); start() and stop() may each be called more than once."""

    task_name: str
    what: str
    log: logging.Logger

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def round(self) -> None:
        raise NotImplementedError

    def round_failed(self) -> None:
        """Called after a round raised, once it is logged."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s round failed; trying again next round", self.what)
                self.round_failed()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
