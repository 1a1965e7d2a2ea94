"""Production without PORTAL_TRUSTED_PROXIES, reached from a proxy's address: one
warning in the log, and a sentence the readiness check can report (issue 11, item 7
part)."""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx
import pytest

from portal.security.proxies import ProxyWatch, is_internal, proxy_problem

from conftest import LiveServer

SECRET = "q8Zr-3vKw_T1mXy7LpD4nH0sBcJ9eUfA2gQ6tVoR5iW"


@pytest.fixture
def production(settings):
    return replace(settings, env="production", secret_key=SECRET)


def serve_and_get(settings, count: int = 3) -> LiveServer:
    server = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            for path in ["/", "/contact", "/no-such-page"][:count]:
                client.get(path)
    finally:
        server.stop()
    return server


class Keep(logging.Handler):
    """Collects records of one logger (the app's logging set-up replaces root handlers,
    so pytest's caplog does not see a live server's records)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def security_log():
    keep, logger = Keep(), logging.getLogger("portal.security")
    logger.addHandler(keep)
    yield keep.records
    logger.removeHandler(keep)


def test_production_behind_an_untrusted_proxy_warns_once_and_tells_readiness(
    production, security_log
):
    server = serve_and_get(production)
    problem = proxy_problem(server.server.config.app.state)
    assert problem and problem.startswith("requests arrive from 127.0.0.1, a proxy's address")
    assert "PORTAL_TRUSTED_PROXIES" in problem
    assert [r.getMessage() for r in security_log] == [problem]  # once, not per request


@pytest.mark.parametrize("changes", [{"env": "development"}, {"trusted_proxies": ("127.0.0.1",)}])
def test_no_warning_in_development_or_with_a_trusted_proxy(production, changes, security_log):
    server = serve_and_get(replace(production, **changes), count=1)
    assert proxy_problem(server.server.config.app.state) is None
    assert security_log == []


def test_only_internal_addresses_count(production):
    watch = ProxyWatch(production)
    for public in ["203.0.113.7", "2001:db8::1", "8.8.8.8", "testclient"]:
        watch.observe(public)
    assert watch.problem() is None
    assert all(is_internal(a) for a in ["10.0.0.2", "192.168.1.1", "172.16.0.9", "::1", "fe80::1"])
    watch.observe("10.0.0.2")
    assert "10.0.0.2" in watch.problem()


def test_readiness_reports_the_untrusted_proxy(production, security_log):
    """/readyz fails, naming PORTAL_TRUSTED_PROXIES, once requests came through a proxy
    the portal does not trust (item 7: behind it everyone looks like one client)."""
    server = LiveServer(production).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            client.get("/")  # from 127.0.0.1: looks like a proxy on the same machine
            ready = client.get("/readyz")
    finally:
        server.stop()
    assert ready.status_code == 503
    assert "PORTAL_TRUSTED_PROXIES" in ready.text and "FAIL" in ready.text
