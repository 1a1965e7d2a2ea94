"""Every Prometheus metric the portal defines, and the small `record_*` functions the
services call. Request counts and latency are recorded by the request log wrapper
(observe/logs.py, which sees every request, static files included), labelled by route
template (/accounts/{account_id}/bills), never by raw path.

No label ever carries personal data: only outcomes, states, gateway and job names.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "portal"

REQUEST_LABELS = ["method", "path", "status_code", "app_name"]  # as Litestar's plugin named them
REQUESTS = Counter(f"{PREFIX}_requests_total", "Total requests", REQUEST_LABELS)
REQUEST_ERRORS = Counter(
    f"{PREFIX}_requests_error_total", "Requests answered with a 5xx status", REQUEST_LABELS
)
REQUEST_SECONDS = Histogram(
    f"{PREFIX}_request_duration_seconds", "Request duration, in seconds", REQUEST_LABELS
)
# The probes themselves are not counted (a scrape every 15 s would drown the pages).
NOT_COUNTED = frozenset({"/metrics", "/healthz", "/readyz"})

SIGN_INS = Counter(
    f"{PREFIX}_sign_ins_total",
    "Sign-in attempts by outcome: success, failure, lockout (an account just locked), "
    "locked (refused while locked), throttled (too many failures from one address), "
    "code_failure (a wrong two-step code)",
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


# The method label: HTTP's own methods, and "OTHER" for anything a client makes up (each
# new label value is a new series that the process keeps and /metrics prints for ever).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})

# (method, route, status) -> that combination's counter and histogram. prometheus_client's
# labels() checks and joins its label values on every call; this is a dictionary look-up.
_request_children: dict[tuple[str, str, int], tuple] = {}
REQUEST_CHILDREN_MAX = 2000  # a safety bound; routes x methods x statuses stay far below


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request; `route` is the route template ("-" when none matched)."""
    if route in NOT_COUNTED:
        return
    if method not in METHODS:
        method = "OTHER"
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        labels = (method, route, str(status), PREFIX)
        children = (REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels))
        if len(_request_children) < REQUEST_CHILDREN_MAX:
            _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if status >= 500:
        REQUEST_ERRORS.labels(method, route, str(status), PREFIX).inc()
