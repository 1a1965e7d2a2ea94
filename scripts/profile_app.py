"""Where a request's time goes, in-process (no server, no network): drives the ASGI app
directly and prints the CPU time per request beside the bare Litestar route, then
optionally the top functions of a cProfile run.

    .venv/bin/python scripts/profile_app.py [PATH ...] [--n 2000] [--profile] [--signed-in]
        [--concurrency 32]

With no PATH: the landing page; "{id}" in a PATH is the signed-in resident's account. The database is a fresh `portal demo` in a temporary
folder; --signed-in sends a resident's session cookie (for /account and friends).

--parts also prints, per request, the wall time spent inside Jinja's Template.render,
inside the page gzip, and inside any function named as `module:Qualified.name`
(e.g. `--parts portal.billing.chart:usage_chart_svg`); unlike cProfile, it times only
those calls, so their figures are not inflated by the profiler.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib
import inspect
import os
import pstats
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
BIN = Path(sys.executable).parent


def requests_made(n: int, concurrency: int) -> int:
    """drive()'s timed requests: n shared evenly between the clients (at least one each)."""
    return max(1, n // concurrency) * concurrency


async def drive(
    app,
    path: str,
    n: int,
    headers: list[tuple[bytes, bytes]],
    form: bytes = b"",
    concurrency: int = 1,
) -> float:
    path_only, _, query = path.partition("?")
    if form:  # an htmx POST with its CSRF token, as the per-field check sends
        headers = [
            *headers,
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"hx-request", b"true"),
            (b"content-length", str(len(form)).encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST" if form else "GET",
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"accept-encoding", b"gzip"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = []

    async def receive():
        return {"type": "http.request", "body": form, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    for _ in range(50):  # warm-up
        await app(dict(scope, state={}), receive, send)
    status.clear()

    async def one_client(count: int) -> None:
        for _ in range(count):
            await app(dict(scope, state={}), receive, send)

    started = time.process_time()  # every thread's CPU (aiosqlite's included)
    each = requests_made(n, concurrency) // concurrency
    await asyncio.gather(*(one_client(each) for _ in range(concurrency)))
    took = time.process_time() - started
    bad = [s for s in status if s >= 400]
    if bad:
        print(f"  {path}: {len(bad)} answers >= 400 (e.g. {bad[0]})")
    return took / requests_made(n, concurrency) * 1e6


PARTS: dict[str, float] = {}


def _timed(name: str, fn):
    """fn, adding the wall time of each call to PARTS[name]."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                PARTS[name] += time.perf_counter() - started

        return timed_async

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PARTS[name] += time.perf_counter() - started

    return timed


class _TimedGzip:
    """zlib.compressobj for portal.compression, timing compress() and flush()."""

    DEFLATED = zlib.DEFLATED

    def __init__(self, *args) -> None:
        self.packer = zlib.compressobj(*args)
        self.compress = _timed("gzip", self.packer.compress)
        self.flush = _timed("gzip", self.packer.flush)

    @staticmethod
    def compressobj(*args):
        return _TimedGzip(*args)


def time_parts(names: list[str]) -> None:
    """Wrap Jinja's render, the page gzip and the named functions (also where another
    module imported them by name)."""
    import jinja2

    import portal.compression

    PARTS.update(render=0.0, gzip=0.0)
    jinja2.Template.render = _timed("render", jinja2.Template.render)
    portal.compression.zlib = _TimedGzip
    for name in names:
        module_name, _, path = name.partition(":")
        *owners, attribute = path.split(".")
        owner = importlib.import_module(module_name)
        for part in owners:
            owner = getattr(owner, part)
        original = getattr(owner, attribute)
        PARTS[name] = 0.0
        wrapped = _timed(name, original)
        setattr(owner, attribute, wrapped)
        for module in list(sys.modules.values()):
            if module is not owner and getattr(module, attribute, None) is original:
                setattr(module, attribute, wrapped)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*", default=["/"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--save", help="with --profile: also write the stats to this file")
    parser.add_argument("--signed-in", action="store_true")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once, as wrk's -c"
    )
    parser.add_argument("--form", default="", help="POST this urlencoded body (with a CSRF token)")
    parser.add_argument(
        "--parts",
        nargs="?",
        const="",
        default=None,
        help="time Jinja's render, the gzip and these module:Qualified.name functions",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "profile.sqlite3"
        os.environ["PORTAL_DATABASE"] = str(db)
        os.environ.setdefault("PORTAL_TEMPLATES_RELOAD", "0")  # as in production
        # Every request comes from one address: lift the per-field check budget so a
        # check is measured, not the "Too many checks" answer (bench_server.py does too).
        os.environ.setdefault("PORTAL_CHECKS_PER_ADDRESS", "100000000")
        os.environ.setdefault("PORTAL_CHECKS_OVERALL", "100000000")
        subprocess.run([str(BIN / "portal"), "demo"], check=True, capture_output=True)
        from bench_server import prepare_resident

        _, session_id, account_id = prepare_resident(db)
        import logging

        from bare_app import app as bare

        from portal.app import create_app
        from portal.observe.logs import uvicorn_log_config

        logging.config.dictConfig(uvicorn_log_config("text"))
        if args.parts is not None:
            time_parts([name for name in args.parts.split(",") if name])
        app = create_app()
        from litestar.middleware.csrf import generate_csrf_token

        token = generate_csrf_token(secret=app.state.services.settings.secret_key)
        # A signed-in browser has the session and the CSRF cookie sign-in gave it.
        cookies = [f"portal_session={session_id}", f"portal_csrf={token}"] if args.signed_in else []
        form = args.form.encode()
        if form and not args.signed_in:
            cookies.append(f"portal_csrf={token}")
        headers = [(b"cookie", "; ".join(cookies).encode())] if cookies else []
        if form:
            headers.append((b"x-csrftoken", token.encode()))

        async def go() -> None:
            for handler in app.on_startup:
                await handler()
            base = await drive(bare, "/", args.n, [])
            print(f"bare route: {base:7.1f} us/request (CPU)")
            for path in args.paths:
                path = path.replace("{id}", str(account_id))  # the resident's account
                PARTS.update(dict.fromkeys(PARTS, 0.0))
                us = await drive(app, path, args.n, headers, form, args.concurrency)
                print(f"{path}: {us:7.1f} us/request (CPU), {us / base:5.1f}x the bare route")
                if PARTS:
                    # drive()'s 50 warm-up requests are timed too
                    counted = requests_made(args.n, args.concurrency) + 50
                    print(
                        "  "
                        + ", ".join(f"{k} {v / counted * 1e6:.1f} us" for k, v in PARTS.items())
                    )
                if args.profile:
                    prof = cProfile.Profile()
                    prof.enable()
                    await drive(app, path, args.n, headers, form, args.concurrency)
                    prof.disable()
                    if args.save:
                        prof.dump_stats(args.save)
                    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
                    pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            for handler in app.on_shutdown:
                await handler()

        asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
