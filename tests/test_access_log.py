"""`portal serve`'s access log: one line per request in the configured format, never
the one-time codes of emailed links."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.observe import logs

from conftest import free_port


def test_access_log_drops_query_strings(tmp_path):
    port = free_port()
    env = {**os.environ, "PORTAL_DATABASE": str(tmp_path / "p.sqlite3")}
    server = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/verify?username=maria1&verificationcode=SECRETCODE123"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as exc:  # 400: the code is not valid; logged all the same
                assert exc.code == 400
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert "GET /verify?" in output
    assert "SECRETCODE123" not in output and "maria1" not in output
    # One line per request: local time to the millisecond, level, logger, the request id
    # read out on the phone (no 0/O, 1/I/L), method, path, status, route, duration.
    line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO portal\.request \[[A-HJKMNP-Z2-9]{10}\] "
    assert re.search(line + r"GET /verify\?… 400 route=/verify \d+\.\dms$", output, re.M), output


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
def test_the_request_line_written_directly_is_what_logging_writes(formatter):
    """RequestLog writes its line through the formatter alone when logging is ours
    (observe/logs.py): the same text, to the millisecond, as a record through logging."""
    fields = {"method": "GET", "path": "/verify?…", "route": "/verify", "status": 400}
    fields["duration_ms"] = 1.2
    record = logging.getLogger("portal.request").makeRecord(
        "portal.request",
        logging.INFO,
        "(unknown file)",
        0,
        logs.REQUEST_LINE,
        ("GET", "/verify?…", 400, "/verify", 1.23),
        None,
        extra={"event": "request", **fields},
    )
    record.request_id = "ABCDEFGH23"
    for created in (1764765074.2219, 1764765074.9996, time.time()):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        direct = formatter.request_line(created, "ABCDEFGH23", record.getMessage(), fields)
        assert direct == formatter.format(record)


@pytest.mark.parametrize("logger", ["portal.request", "portal"])
async def test_a_handler_of_an_operators_own_still_receives_request_lines(settings, logger):
    """Logging set up otherwise than ours: the line goes through logging, record and all."""
    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append
    async with AsyncTestClient(app=create_app(settings)) as client:
        logging.getLogger(logger).addHandler(listener)
        try:
            await client.get("/healthz")
        finally:
            logging.getLogger(logger).removeHandler(listener)
    assert [(r.method, r.route, r.status, r.event) for r in records] == [
        ("GET", "/healthz", 200, "request")
    ]
