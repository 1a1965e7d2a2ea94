"""Every Prometheus metric the portal defines, and the small `record_*` functions the
services call. Request counts and latency come from Litestar's Prometheus middleware,
labelled by route template (/accounts/{account_id:int}/bills), never by raw path.

No label ever carries personal data: only outcomes, states, gateway and job names.
"""

from __future__ import annotations

import time

from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import Counter, Gauge

PREFIX = "portal"

SIGN_INS = Counter(
    f"{PREFIX}_sign_ins_total",
    "Sign-in attempts by outcome: success, failure, lockout (an account just locked), "
    "locked (refused while locked), throttled (too many failures from one address)",
    ["outcome"],
)
REGISTRATIONS = Counter(f"{PREFIX}_registrations_total", "Online accounts registered")
PAYMENTS = Counter(
    f"{PREFIX}_payments_total",
    "Payments entering a state (pending, succeeded, failed, canceled), by gateway",
    ["state", "gateway"],
)
BACKGROUND_RUNS = Counter(
    f"{PREFIX}_background_runs_total", "Background job rounds, by job and result", ["job", "result"]
)
LAST_BACKGROUND_RUN = Gauge(
    f"{PREFIX}_background_last_run_timestamp_seconds",
    "When each background job last finished a round (Unix time)",
    ["job"],
)
OUTBOX_BACKLOG = Gauge(f"{PREFIX}_outbox_backlog", "Emails in the outbox not sent yet")
OUTBOX_OLDEST_AGE = Gauge(
    f"{PREFIX}_outbox_oldest_age_seconds", "Age of the oldest unsent email (0 when none)"
)

# job name -> time.time() of its last finished round, for /readyz
last_runs: dict[str, float] = {}


def record_sign_in(outcome: str) -> None:
    SIGN_INS.labels(outcome).inc()


def record_registration() -> None:
    REGISTRATIONS.inc()


def record_payment(state: str, gateway: str) -> None:
    PAYMENTS.labels(state, gateway).inc()


def record_background_run(job: str, ok: bool = True) -> None:
    """One round of a background job ended; only a good round counts as "recent" for
    /readyz, so a loop that keeps failing makes the portal not ready."""
    BACKGROUND_RUNS.labels(job, "ok" if ok else "error").inc()
    if ok:
        now = time.time()
        LAST_BACKGROUND_RUN.labels(job).set(now)
        last_runs[job] = now


def record_outbox(backlog: int, oldest_age_seconds: float) -> None:
    OUTBOX_BACKLOG.set(backlog)
    OUTBOX_OLDEST_AGE.set(max(0.0, oldest_age_seconds))


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name="portal",
        prefix=PREFIX,
        group_path=True,  # label by route template: bounded, and no ids or codes
        exclude=["^/metrics$", "^/healthz$", "^/readyz$"],
    )
