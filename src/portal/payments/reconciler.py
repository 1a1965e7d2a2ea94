"""`portal serve`'s own reconcile loop: with a real processor, every few minutes ask it
about payments still pending, so a lost webhook (a firewall, an outage) loses nothing.
`portal payments reconcile` runs the same check once."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from portal.payments.service import PaymentsService
from portal.payments.trail import reconcile

log = logging.getLogger("portal.payments")
RECONCILE_AFTER_MINUTES = 15  # a webhook normally arrives within seconds
RECONCILE_EVERY_SECONDS = 300.0


class Reconciler:
    def __init__(
        self,
        payments: PaymentsService,
        *,
        minutes: int = RECONCILE_AFTER_MINUTES,
        interval: float = RECONCILE_EVERY_SECONDS,
    ) -> None:
        self.payments = payments
        self.minutes = minutes
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await reconcile(self.payments, self.minutes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile round failed; trying again next round")

    async def start(self) -> None:
        """On start-up, for a real processor only (the sandbox settles in-process)."""
        if self.payments.gateway.name != "sandbox" and self._task is None:
            self._task = asyncio.create_task(self.run(), name="payments-reconcile")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        close = getattr(self.payments.gateway, "close", None)
        if close is not None:
            await close()
