"""/healthz, /readyz and /metrics, the counters the services record, request ids in the
log and on the error page, the demo login, and PORTAL_TEMPLATES_DIR."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from portal import cli
from portal import db as portal_db
from portal.app import create_app
from test_payments_http import amount_form, confirm_data, pay_card, pay_client  # noqa: F401

from conftest import LiveServer, free_port
from resident_steps import post_form, query, registration
from sample_data import load_billing

TOKEN = "metrics-token-0123456789abcdef"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_probes_answer_plain_text_without_session_or_csrf_work(settings, client):
    first = await client.get("/")  # the app has started; a page sets the CSRF cookie
    assert "portal_csrf" in first.headers.get("set-cookie", "")
    client.cookies.clear()
    # With the sessions table gone, any request that loads a session fails:
    conn = __import__("sqlite3").connect(settings.database)
    conn.execute("DROP TABLE sessions")
    conn.close()
    client.cookies.set("portal_session", "x" * 40)
    assert (await client.get("/contact")).status_code == 500
    for path, body in (("/healthz", "ok\n"), ("/readyz", None)):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "set-cookie" not in response.headers
        assert body is None or response.text == body
    ready = (await client.get("/readyz")).text
    latest = portal_db.migrations()[-1][0]
    assert (
        "ok    database writable" in ready
        and f"ok    migrations at {latest:04d} of {latest:04d}" in ready
    )


async def test_readyz_fails_on_an_old_migration_and_a_stuck_outbox(settings):
    dead_smtp = replace(settings, smtp_host="127.0.0.1", smtp_port=free_port())
    async with AsyncTestClient(app=create_app(dead_smtp)) as client:
        assert (await client.get("/readyz")).status_code in (200, 503)
        conn = __import__("sqlite3").connect(settings.database)
        latest = portal_db.migrations()[-1][0]
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
        conn.execute(
            "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at,"
            " next_attempt_at) VALUES ('a@example.com', 's', 't', 'h',"
            " '2020-01-01T00:00:00.000000Z', '2099-01-01T00:00:00.000000Z')"
        )
        conn.commit()
        conn.close()
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert f"FAIL  migrations at {latest - 1:04d} of {latest:04d}" in response.text
    assert re.search(r"FAIL  outbox 1 waiting, oldest \d+ s", response.text)
    assert "a@example.com" not in response.text  # no personal data


async def test_metrics_need_loopback_or_the_token(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:  # peer "testclient"
        assert (await client.get("/metrics")).status_code == 404
    with_token = replace(settings, metrics_token=TOKEN)
    async with AsyncTestClient(app=create_app(with_token)) as client:
        await client.get("/accounts/7/bills", follow_redirects=False)
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 404
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    text = response.text
    assert 'path="/accounts/{account_id}/bills"' in text  # the route, never the raw path
    assert "/accounts/7/" not in text
    for name in ("portal_requests_total", "portal_request_duration_seconds_bucket"):
        assert name in text
    for name in ("portal_outbox_backlog 0.0", "portal_outbox_oldest_age_seconds 0.0"):
        assert name in text


async def test_every_request_is_counted_by_route_and_status(settings):
    labels = {"method": "GET", "path": "/accounts/{account_id}/bills", "app_name": "portal"}
    before = {s: sample("portal_requests_total", status_code=s, **labels) for s in ("302", "303")}
    async with AsyncTestClient(app=create_app(settings)) as client:
        for _ in range(3):
            await client.get("/accounts/7/bills", follow_redirects=False)
    after = {s: sample("portal_requests_total", status_code=s, **labels) for s in ("302", "303")}
    assert sum(after.values()) - sum(before.values()) == 3


async def test_made_up_methods_are_counted_together_not_one_series_each(settings):
    before = sample(
        "portal_requests_total", method="OTHER", path="-", status_code="404", app_name="portal"
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        for n in range(3):
            await client.request(f"MADEUP{n}", "/nowhere")
    labels = {"path": "-", "status_code": "404", "app_name": "portal"}
    assert sample("portal_requests_total", method="OTHER", **labels) == before + 3
    assert not sample("portal_requests_total", method="MADEUP0", **labels)


def test_metrics_from_loopback_but_not_relayed_from_outside(settings):
    server = LiveServer(replace(settings, trusted_proxies=("127.0.0.1",))).start()
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            assert response.status == 200 and b"portal_requests_total" in response.read()
        relayed = urllib.request.Request(
            server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(relayed, timeout=10)
        assert refused.value.code == 404
    finally:
        server.stop()


async def test_sign_in_registration_and_payment_counters(settings, client, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    monkeypatch.delenv("PORTAL_ENV", raising=False)
    assert cli.main(["demo"]) == 0
    printed = capsys.readouterr().out
    username, password = re.search(r"Username (\S+)  Password (\S+)", printed).groups()
    before = {o: sample("portal_sign_ins_total", outcome=o) for o in ("success", "failure")}

    wrong = await post_form(client, "/login", {"username": username, "password": "not it"})
    assert wrong.status_code == 422
    right = await post_form(
        client, "/login", {"username": username, "password": password}, follow_redirects=False
    )
    assert right.status_code == 303 and right.headers["location"] == "/account"
    account = await client.get("/account")
    assert "0200000" in account.text  # the demo login sees the first demo account
    assert sample("portal_sign_ins_total", outcome="failure") == before["failure"] + 1
    assert sample("portal_sign_ins_total", outcome="success") == before["success"] + 1

    registered = sample("portal_registrations_total")
    load_billing(settings.database)
    client.cookies.clear()
    response = await post_form(client, "/register", registration())
    assert response.status_code == 200 and query(
        settings.database, "SELECT 1 FROM users WHERE username = 'maria1'"
    )
    assert sample("portal_registrations_total") == registered + 1


async def test_payment_counters_by_state_and_gateway(pay_client):  # noqa: F811
    pending = sample("portal_payments_total", state="pending", gateway="sandbox")
    succeeded = sample("portal_payments_total", state="succeeded", gateway="sandbox")
    form = (await amount_form(pay_client)).text
    receipt = await pay_card(pay_client, confirm_data(form))
    assert receipt.status_code == 200
    assert sample("portal_payments_total", state="pending", gateway="sandbox") == pending + 1
    assert sample("portal_payments_total", state="succeeded", gateway="sandbox") == succeeded + 1


def test_demo_login_is_development_only(settings, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    from test_security_production import SAFE  # settings production accepts

    for name, value in SAFE.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["demo"]) == 0
    assert "Password" not in capsys.readouterr().out
    assert not query(settings.database, "SELECT 1 FROM users WHERE username = 'demo'")


async def test_templates_dir_overrides_single_templates(settings, tmp_path):
    city = tmp_path / "city"
    (city / "partials").mkdir(parents=True)
    (city / "partials" / "site_footer.html").write_text("<footer>City footer</footer>")
    async with AsyncTestClient(
        app=create_app(replace(settings, templates_dir=str(city)))
    ) as client:
        page = (await client.get("/contact")).text
    assert "City footer" in page and "Contact Us" in page  # the rest is the shipped page
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert "City footer" not in (await client.get("/contact")).text


def test_json_log_lines_carry_the_request_id_shown_on_the_error_page(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_DATABASE": str(tmp_path / "p.sqlite3"),
        "PORTAL_LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/no-such-page?code=SECRET9", timeout=2
                )
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
                request_id = exc.headers["X-Request-ID"]
                page = exc.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert re.fullmatch(r"[A-Z2-9]{10}", request_id)
    assert f"give them this reference: {request_id}" in page
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert entries, output
    for entry in entries:
        assert {"time", "level", "event", "request_id"} <= entry.keys()
    (line,) = [e for e in entries if e.get("request_id") == request_id]
    assert line["event"] == "request" and line["status"] == 404 and line["route"] == "-"
    assert line["path"] == "/no-such-page?…" and isinstance(line["duration_ms"], float)
    assert "SECRET9" not in output


def test_operations_settings_are_checked(tmp_path):
    from portal.settings import Settings, SettingsError

    loaded = Settings.from_env(
        {
            "PORTAL_TEMPLATES_DIR": str(tmp_path),
            "PORTAL_LOG_FORMAT": "JSON",
            "PORTAL_METRICS_TOKEN": TOKEN,
        }
    )
    assert loaded.template_dirs == (tmp_path,) and loaded.log_format == "json"
    assert TOKEN not in repr(loaded)
    for name, value, message in (
        ("PORTAL_TEMPLATES_DIR", str(tmp_path / "nope"), "must be a folder"),
        ("PORTAL_LOG_FORMAT", "xml", "must be text or json"),
        ("PORTAL_METRICS_TOKEN", "short", "at least 16"),
    ):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env({name: value})


async def test_readiness_tells_when_the_jobs_runner_stops_finishing_rounds(settings):
    """AutoPay, reminders and clean-up run in the background: /readyz says when the last
    round is late (two intervals and a minute)."""
    app = create_app(replace(settings, jobs_every_seconds=1))
    async with AsyncTestClient(app=app) as client:
        deadline = time.monotonic() + 15
        while app.state.jobs.last_round is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "ok    jobs runner" in ready.text
        # Let the runner finish the round it is sleeping towards, then sleep for hours;
        # then pretend its last round ended long ago (moving its clock, not mocking it).
        jobs = app.state.jobs
        jobs.interval, before = 10_000, jobs.last_round
        while jobs.last_round == before and time.monotonic() < deadline + 15:
            await asyncio.sleep(0.05)
        jobs.last_round = time.monotonic() - 30_000
        late = await client.get("/readyz")
    assert late.status_code == 503
    assert "FAIL  jobs runner last finished a round" in late.text
