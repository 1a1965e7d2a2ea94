"""/healthz, /readyz and /metrics: plain text, no personal data, no session or CSRF
work (app.py leaves these paths out of both), cheap enough to ask every few seconds.

GET /healthz   the process answers: "ok"
GET /readyz    database writable, migrations current, outbox not stuck, background
               sender running recently: one line each; 200 when all hold, else 503
GET /metrics   Prometheus text; only from loopback or with PORTAL_METRICS_TOKEN
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from datetime import UTC, datetime

from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusController
from litestar.response import Response

from portal import db as portal_db
from portal.observe import metrics
from portal.security.proxies import proxy_problem
from portal.settings import Settings
from portal.web import client_address

PATHS = ("/healthz", "/readyz", "/metrics")
EXCLUDE = [f"^{path}$" for path in PATHS]  # as middleware exclude patterns
OUTBOX_STUCK_SECONDS = 3600  # an unsent email older than this: SMTP has been failing
BACKGROUND_LATE_SECONDS = 300  # the sender loop polls every 2 s; 5 min silent is dead
WRITE_PROBE_SECONDS = 3.0


def _text(lines: list[str], status: int = 200) -> Response:
    return Response(
        "\n".join(lines) + "\n",
        status_code=status,
        media_type="text/plain",
        headers={"Cache-Control": "no-store"},
    )


@get("/healthz", sync_to_thread=False)
def healthz() -> Response:
    return _text(["ok"])


async def outbox_state(db: portal_db.Database) -> tuple[int, float]:
    """(emails not sent yet, age in seconds of the oldest one)."""
    row = await db.fetchone("SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL")
    if not row or not row[0]:
        return 0, 0.0
    oldest = datetime.fromisoformat(row[1].replace("Z", "+00:00"))
    return row[0], (datetime.now(UTC) - oldest).total_seconds()


@get("/readyz")
async def readyz(request: Request) -> Response:
    db: portal_db.Database = request.app.state.services.db
    settings: Settings = request.app.state.services.settings
    lines, ready = [], True

    def report(ok: bool, line: str) -> None:
        nonlocal ready
        ready = ready and ok
        lines.append(("ok    " if ok else "FAIL  ") + line)

    try:
        async with asyncio.timeout(WRITE_PROBE_SECONDS), db.write():
            pass  # BEGIN IMMEDIATE took the write lock: the file is writable
        report(True, "database writable")
    except Exception as exc:
        report(False, f"database not writable ({type(exc).__name__})")
    latest = portal_db.migrations()[-1][0]
    current = await db.fetchval("SELECT max(version) FROM schema_migrations")
    report(current == latest, f"migrations at {current:04d} of {latest:04d}")
    backlog, age = await outbox_state(db)
    if settings.smtp_host:
        report(age < OUTBOX_STUCK_SECONDS, f"outbox {backlog} waiting, oldest {age:.0f} s")
        last = metrics.last_runs.get("outbox")
        since = None if last is None else time.time() - last
        report(
            since is not None and since < BACKGROUND_LATE_SECONDS,
            "background sender "
            + ("never ran" if since is None else f"last round {since:.0f} s ago"),
        )
    else:
        report(True, f"outbox {backlog} waiting (no SMTP host: development mailbox)")
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is not None:
        late = jobs.problem()
        report(late is None, late or "jobs runner (AutoPay, reminders, clean-up) on time")
    problem = proxy_problem(request.app.state)
    if problem:  # behind an untrusted proxy every resident looks like one client
        report(False, problem)
    return _text(lines, 200 if ready else 503)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def metrics_allowed(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Loopback (after PORTAL_TRUSTED_PROXIES, so a request relayed by the proxy counts
    as its real client), or `Authorization: Bearer <PORTAL_METRICS_TOKEN>`. Anyone else
    gets the ordinary 404 page: the endpoint is not advertised."""
    token = connection.app.state.services.settings.metrics_token
    given = connection.headers.get("authorization", "")
    if token and secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return
    if _loopback(client_address(connection)):
        return
    raise NotFoundException()


async def refresh_gauges(request: Request) -> None:
    """Outbox gauges are read from the database at scrape time."""
    metrics.record_outbox(*await outbox_state(request.app.state.services.db))


class MetricsController(PrometheusController):
    path = "/metrics"
    guards = [metrics_allowed]
    before_request = refresh_gauges


def handlers(settings: Settings) -> list:
    return [healthz, readyz, MetricsController]
