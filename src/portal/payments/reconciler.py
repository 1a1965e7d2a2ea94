"""`portal serve`'s own reconcile loop: with a real processor, every few minutes ask it
about payments still pending, so a lost webhook (a firewall, an outage) loses nothing.
`portal payments reconcile` runs the same check once."""

from __future__ import annotations

import logging

from portal.payments.service import PaymentsService
from portal.payments.trail import reconcile
from portal.periodic import Periodic

log = logging.getLogger("portal.payments")
RECONCILE_AFTER_MINUTES = 15  # a webhook normally arrives within seconds
RECONCILE_EVERY_SECONDS = 300.0


class Reconciler(Periodic):
    task_name = "payments-reconcile"
    what = "reconcile"
    log = log

    def __init__(
        self,
        payments: PaymentsService,
        *,
        minutes: int = RECONCILE_AFTER_MINUTES,
        interval: float = RECONCILE_EVERY_SECONDS,
    ) -> None:
        super().__init__(interval)
        self.payments = payments
        self.minutes = minutes

    async def round(self) -> None:
        await reconcile(self.payments, self.minutes)

    async def start(self) -> None:
        """On start-up, for a real processor only (the sandbox settles in-process)."""
        if self.payments.gateway.name != "sandbox":
            await super().start()

    async def stop(self) -> None:
        await super().stop()
        close = getattr(self.payments.gateway, "close", None)
        if close is not None:
            await close()
