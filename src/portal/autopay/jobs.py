"""The runner: all time-driven work, once. `portal jobs run [--now ISO-8601]` calls
run_once(); `portal serve` runs it every PORTAL_JOBS_EVERY_SECONDS (JobsLoop), so a
single-server install needs no cron. "now" is a parameter all the way down, so tests
move the clock instead of waiting.

One round: release registrations never verified, ask the processor about pending
payments (a real processor only: the sandbox settles at once), schedule AutoPay charges
for new bills, send reminders, make the charges that are due, then send the email
notices residents opted into (payment due, past due, possible leak) and the
expiring-card emails; last, housekeeping deletes what the portal no longer needs
(portal.housekeeping: ended sessions, old links, the record of old sent mail ...).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from portal import housekeeping
from portal.accounts.ownership import release_stale_registrations
from portal.observe import metrics
from portal.payments.reconciler import RECONCILE_AFTER_MINUTES
from portal.payments.trail import reconcile
from portal.periodic import Periodic
from portal.progress import Meter

log = logging.getLogger("portal.jobs")


STEPS = 7


async def run_once(
    services: Any, now: datetime | None = None, meter: Meter | None = None
) -> dict[str, int]:
    """All due work, once. `meter` shows the steps done (portal.progress)."""
    now = now or datetime.now(UTC)
    meter = meter or Meter()
    meter.stage("running the jobs", total=STEPS, unit="steps")
    counts: dict[str, int] = {}
    async with services.db.write() as conn:
        counts["released"] = await release_stale_registrations(conn, "runner", now=now)
    meter.update(1)
    if services.payments.gateway.name != "sandbox":
        checked = await reconcile(services.payments, RECONCILE_AFTER_MINUTES, now)
        counts["reconciled"] = checked["changed"]
    counts["settled"] = await services.saved_pay.settle_stale(now)  # one-step payments
    meter.update(2)
    counts["scheduled"] = await services.charger.schedule_bills(now)
    meter.update(3)
    counts["reminded"] = await services.charger.remind(now)
    meter.update(4)
    counts.update(await services.charger.charge_due(now))
    meter.update(5)
    counts["notices"] = await services.notices.send_due(now)
    counts["cards_expiring"] = await services.expiry.send_due(now)
    meter.update(6)
    # Never ahead of the real clock: a --now in the future (a rehearsal of due dates)
    # must not end sessions that are still in use.
    ended_by = min(now, datetime.now(UTC))
    keep = services.settings.audit_keep_days
    counts["deleted"] = sum((await housekeeping.clean(services.db, ended_by, keep)).values())
    meter.update(STEPS)
    return counts


def summary(counts: dict[str, int], now: datetime) -> str:
    return f"jobs at {now.astimezone(UTC).isoformat(timespec='seconds')}: " + ", ".join(
        f"{name} {count}" for name, count in counts.items()
    )


class JobsLoop(Periodic):
    """`portal serve`'s background runner (started and stopped with the app)."""

    task_name = "portal-jobs"
    what = "jobs"
    log = log

    def __init__(self, services: Any, interval: float) -> None:
        super().__init__(interval)
        self.services = services
        self.started: float | None = None  # time.monotonic() of start()
        self.last_round: float | None = None  # of the last round that finished

    async def round(self) -> None:
        now = datetime.now(UTC)
        counts = await run_once(self.services, now)
        self.last_round = time.monotonic()
        metrics.record_background_run("jobs")
        if any(counts.values()):
            log.info(summary(counts, now))

    def round_failed(self) -> None:
        metrics.record_background_run("jobs", ok=False)

    def problem(self) -> str | None:
        """For /readyz: why the runner looks stuck (no round finished in two intervals
        and a minute), or None."""
        if self.started is None:
            return None
        late = 2 * self.interval + 60
        since = time.monotonic() - (self.last_round or self.started)
        if since <= late:
            return None
        if self.last_round is None:
            return f"jobs runner has finished no round in {since:.0f} s since start"
        return f"jobs runner last finished a round {since:.0f} s ago"

    async def start(self) -> None:
        if self._task is None:
            self.started = time.monotonic()
        await super().start()
