"""Server and phone benchmarks; prints Markdown tables for BENCHMARKS.md.

    .venv/bin/python scripts/bench_server.py [--duration 10] [--connections 32]

Needs Debian's wrk and chromium. Starts, on 127.0.0.1 only, `portal serve` on a fresh
demo database and a bare Litestar "ok" app, both under uvicorn with one worker, and
stops both at the end. Measures:
  1. requests/s and p50/p99 latency at 32 connections (wrk) for the landing page, the
     registration page, a per-field validation request, the signed-in dashboard and a
     static file, each beside the bare route, as a ratio to it;
  2. the landing page's p99 (a 4-connection wrk probe, not a flood that would starve the
     sign-ins) while 20 sign-ins per second hash passwords, beside its p99 without them;
  3. bytes over the wire (gzip) for a first visit to the landing, registration and
     dashboard pages, and their largest contentful paint in headless Chromium with
     Lighthouse's slow 4G (562.5 ms latency, 1.47 Mbps down) and a 4x slower CPU.
Each table says, in a goal column, whether each of issue #13's goals is met, judged on
the unrounded figure (ratios are printed to three places).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "bench resident password"

# The goals of issue #13, checked on the unrounded figures: a ratio of 0.348 is printed
# 0.348 and "not met", never rounded up to a 0.35 that looks met.
PAGE_RATIO = 0.35
RATIO_GOALS = {"static file `portal.js`": 0.5}  # by row name; every other page: PAGE_RATIO
SIGN_IN_P99_MS = 10
FIRST_VISIT_BYTES = 12_000  # "12 KB", taken as the stricter 12,000
FIRST_VISIT_REQUESTS = 4
FIRST_VISIT_LCP_MS = 1_000


def goal(ratio: float, wanted: float) -> str:
    return f"≥ {wanted}: {'met' if ratio >= wanted else '**not met**'}"


SIGN_IN_RESIDENTS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def start(cmd: list[str], env: dict, url: str, log: Path | None = None) -> subprocess.Popen:
    """Start a server; its log (the portal's one line per request) goes to a file, as a
    service manager's journal would take it, not to a terminal."""
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    wait_up(url)
    return proc


def server_stack() -> str:
    """uvicorn picks httptools and uvloop when installed (uvicorn[standard]), else the
    pure-Python h11 parser and asyncio's loop; both servers here run the same."""
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__}, {http}, {loop} loop, one worker"


def prepare_resident(db: Path) -> tuple[str, str, int]:
    """A verified resident linked to one demo account; returns (username, session id,
    account id)."""
    sys.path.insert(0, str(ROOT / "src"))
    from portal.accounts.passwords import HASHER
    from portal.accounts.tokens import code_hash

    conn = sqlite3.connect(db)
    now = "2026-01-01T00:00:00.000000Z"
    cur = conn.execute(
        "INSERT INTO users (username, username_key, email, email_key, password_hash, paperless,"
        " created_at, verified_at) VALUES ('bench', 'bench', 'b@example.com', 'b@example.com', ?, 1, ?, ?)",
        (HASHER.hash(PASSWORD), now, now),
    )
    linked = conn.execute(
        "INSERT INTO user_accounts (account_id, user_id, linked_at) SELECT id, ?, ? FROM service_accounts"
        " WHERE status = 'active' AND id NOT IN (SELECT account_id FROM user_accounts)"
        " ORDER BY id LIMIT 1",
        (cur.lastrowid, now),
    )
    account_id = conn.execute(
        "SELECT account_id FROM user_accounts WHERE rowid = ?", (linked.lastrowid,)
    ).fetchone()[0]
    # Without Remember me, as most residents sign in: the pages carry the idle sign-out
    # warning (partials/session_timeout.html). The requests themselves keep it alive.
    session_id = secrets.token_urlsafe(32)
    seen = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, remember, created_at, last_seen_at, expires_at)"
        " VALUES (?, ?, 0, ?, ?, '9999-01-01T00:00:00.000000Z')",
        (code_hash(session_id), cur.lastrowid, now, seen),
    )
    # The sign-in load's residents: 20 of them, so no one login is tried 20 times a second
    # (one login's attempts wait for each other: accounts/signin.py).
    hashed = HASHER.hash(PASSWORD)
    conn.executemany(
        "INSERT INTO users (username, username_key, email, email_key, password_hash, paperless,"
        " created_at, verified_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        [
            (f"bench{i}", f"bench{i}", f"b{i}@example.com", f"b{i}@example.com", hashed, now, now)
            for i in range(SIGN_IN_RESIDENTS)
        ],
    )
    conn.commit()
    conn.close()
    return "bench", session_id, account_id


def csrf_cookie(base: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/")
    return next(c.value for c in jar if c.name == "portal_csrf")


LUA_POST = """
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "portal_csrf={token}"
wrk.headers["x-csrftoken"] = "{token}"
wrk.headers["HX-Request"] = "true"
"""

LUA_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %d\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk(
    url: str, duration: int, connections: int, script: str = "", headers: dict | None = None
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script + LUA_REPORT)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", lua.name]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    os.unlink(lua.name)
    requests, micros, p50, p99, errors = re.search(
        r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", out
    ).groups()
    return {
        "rps": int(requests) / (int(micros) / 1e6),
        "p50": float(p50),
        "p99": float(p99),
        "errors": int(errors),
    }


def sign_in_load(base: str, per_second: int, stop: threading.Event, counts: list[int]) -> None:
    """POST /login with the right password `per_second` times a second (argon2 verify each),
    taking the bench residents in turn."""
    token = csrf_cookie(base)
    bodies = [
        urllib.parse.urlencode(
            {"username": f"bench{i}", "password": PASSWORD, "_csrf_token": token}
        ).encode()
        for i in range(SIGN_IN_RESIDENTS)
    ]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def one(body: bytes) -> None:
        request = urllib.request.Request(
            base + "/login", data=body, headers={"Cookie": f"portal_csrf={token}"}
        )
        try:
            opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            if exc.code == 303:
                counts.append(1)
        except OSError:
            pass  # a timeout under load: counted as not done

    interval = 1 / per_second
    next_at = time.monotonic()
    turn = 0
    while not stop.is_set():
        threading.Thread(target=one, args=(bodies[turn % len(bodies)],), daemon=True).start()
        turn += 1
        next_at += interval
        time.sleep(max(0, next_at - time.monotonic()))


def phone(base: str, session_id: str) -> list[dict]:
    from playwright.sync_api import sync_playwright

    pages = [
        ("landing", "/", False),
        ("registration", "/register", False),
        ("dashboard", "/account", True),
    ]
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        for name, path, signed_in in pages:
            context = browser.new_context(
                viewport={"width": 360, "height": 640}, device_scale_factor=2, is_mobile=True
            )
            if signed_in:
                context.add_cookies([{"name": "portal_session", "value": session_id, "url": base}])
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": False,
                    "latency": 562.5,
                    "downloadThroughput": 1.47 * 1024 * 1024 / 8,
                    "uploadThroughput": 675 * 1024 / 8,
                },
            )
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
            transferred: list[int] = []

            def finished(event: dict, sizes: list[int] = transferred) -> None:
                sizes.append(event["encodedDataLength"])

            cdp.on("Network.loadingFinished", finished)
            page.add_init_script("""
                window.__lcp = 0;
                new PerformanceObserver(list => { for (const e of list.getEntries()) window.__lcp = e.startTime; })
                  .observe({type: 'largest-contentful-paint', buffered: true});
            """)
            page.goto(base + path, wait_until="load")
            page.wait_for_timeout(1500)
            lcp = page.evaluate("window.__lcp")
            results.append(
                {
                    "page": name,
                    "bytes": sum(transferred),
                    "requests": len(transferred),
                    "lcp_ms": lcp,
                }
            )
            context.close()
        browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "chromium"):
        if not shutil.which(tool):
            print(f"{tool} is needed: apt-get install {tool}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PORTAL_DATABASE": str(Path(tmp) / "bench.sqlite3"),
            # As in production: templates and static files read once (the access log is
            # on, as always: one line per request on stderr).
            "PORTAL_TEMPLATES_RELOAD": "0",
            # wrk sends every check from one address: lift the per-field check budget
            # so the row measures real checks, not the "Too many checks" answer.
            "PORTAL_CHECKS_PER_ADDRESS": "100000000",
            "PORTAL_CHECKS_OVERALL": "100000000",
        }
        subprocess.run([str(BIN / "portal"), "demo"], env=env, check=True, capture_output=True)
        username, session_id, account_id = prepare_resident(Path(env["PORTAL_DATABASE"]))
        portal_port, bare_port = free_port(), free_port()
        base, bare = f"http://127.0.0.1:{portal_port}", f"http://127.0.0.1:{bare_port}"
        portal = start(
            [str(BIN / "portal"), "serve", "--port", str(portal_port)],
            env,
            base + "/",
            log=Path(tmp) / "portal.log",
        )
        bare_proc = start(
            [
                str(BIN / "uvicorn"),
                "--app-dir",
                str(ROOT / "scripts"),
                "bare_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env,
            bare + "/",
        )
        try:
            token = csrf_cookie(base)
            script = re.search(
                r'src="(/static/js/portal\.js\?v=\w+)"',
                urllib.request.urlopen(base + "/").read().decode(),
            ).group(1)
            gzip = {"Accept-Encoding": "gzip"}
            # What a signed-in browser sends: the session and the CSRF token cookie that
            # sign-in gave it (without the token every page would set a new one).
            signed_in = f"portal_session={session_id}; portal_csrf={token}"
            cases = [
                ("landing page `/`", base + "/", "", gzip),
                ("registration page `/register`", base + "/register", "", gzip),
                (
                    "per-field check `POST /register/check/username`",
                    base + "/register/check/username",
                    LUA_POST.format(body="username=river42&password=&email=", token=token),
                    gzip,
                ),
                ("Pay My Bill `/pay`", base + "/pay", "", gzip),
                (
                    "signed-in dashboard `/account`",
                    base + "/account",
                    "",
                    {**gzip, "Cookie": signed_in},
                ),
                (
                    "bill history `/accounts/{id}/bills`",
                    f"{base}/accounts/{account_id}/bills",
                    "",
                    {**gzip, "Cookie": signed_in},
                ),
                (
                    "usage `/accounts/{id}/usage`",
                    f"{base}/accounts/{account_id}/usage",
                    "",
                    {**gzip, "Cookie": signed_in},
                ),
                ("static file `portal.js`", base + script, "", gzip),
            ]
            baseline = wrk(bare + "/", args.duration, args.connections)
            print(f"\n### Server, {args.connections} connections, {args.duration} s each (wrk)\n")
            print(f"Both servers: {server_stack()}\n")
            print(
                "| Request | req/s | p50 ms | p99 ms | ratio to bare route (req/s) | goal | errors |"
            )
            print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
            print(
                f'| bare Litestar route answering "ok" | {baseline["rps"]:,.0f} | {baseline["p50"]:.2f} | {baseline["p99"]:.2f} | 1.000 | | {baseline["errors"]} |'
            )
            for name, url, script, headers in cases:
                result = wrk(url, args.duration, args.connections, script, headers)
                ratio = result["rps"] / baseline["rps"]
                print(
                    f"| {name} | {result['rps']:,.0f} | {result['p50']:.2f} | {result['p99']:.2f} | {ratio:.3f} | {goal(ratio, RATIO_GOALS.get(name, PAGE_RATIO))} | {result['errors']} |",
                    flush=True,
                )

            # A latency probe of 4 connections, not a flood: a saturating wrk would starve
            # the sign-ins themselves, and the question is how pages answer beside them.
            probe = 4
            quiet = wrk(base + "/", args.duration, probe, "", gzip)
            stop, counts = threading.Event(), []
            loader = threading.Thread(
                target=sign_in_load, args=(base, 20, stop, counts), daemon=True
            )
            loader.start()
            time.sleep(1)
            started = len(counts)
            loaded = wrk(base + "/", args.duration, probe, "", gzip)
            achieved = (len(counts) - started) / args.duration
            stop.set()
            print(f"\n### Landing page while sign-ins hash passwords (wrk, {probe} connections)\n")
            print("| Condition | req/s | p50 ms | p99 ms | goal |")
            print("| --- | ---: | ---: | ---: | --- |")
            print(
                f"| no sign-ins | {quiet['rps']:,.0f} | {quiet['p50']:.2f} | {quiet['p99']:.2f} | |"
            )
            met = "met" if loaded["p99"] < SIGN_IN_P99_MS else "**not met**"
            print(
                f"| 20 sign-ins/s asked, {achieved:.1f}/s done (argon2id m=19 MiB, t=2, p=1) | {loaded['rps']:,.0f} | {loaded['p50']:.2f} | {loaded['p99']:.2f} | p99 < {SIGN_IN_P99_MS} ms: {met} |"
            )

            print(
                "\n### Phone: first visit, slow 4G (562.5 ms RTT, 1.47 Mbps down), 4x CPU slowdown\n"
            )
            print("| Page | bytes over the wire | requests | largest contentful paint | goal |")
            print("| --- | ---: | ---: | ---: | --- |")
            for row in phone(base, session_id):
                met = ""
                if row["page"] == "landing":
                    ok = (
                        row["bytes"] <= FIRST_VISIT_BYTES
                        and row["requests"] <= FIRST_VISIT_REQUESTS
                        and row["lcp_ms"] <= FIRST_VISIT_LCP_MS
                    )
                    met = (
                        f"≤ {FIRST_VISIT_BYTES:,} bytes, ≤ {FIRST_VISIT_REQUESTS} requests,"
                        f" LCP ≤ {FIRST_VISIT_LCP_MS:,} ms: {'met' if ok else '**not met**'}"
                    )
                print(
                    f"| {row['page']} | {row['bytes']:,} | {row['requests']} | {row['lcp_ms']:,.0f} ms | {met} |"
                )
        finally:
            for proc in (portal, bare_proc):
                proc.terminate()
                proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
