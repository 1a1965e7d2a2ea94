"""Faults: online backups while the portal serves, SIGKILL in the middle of a stream of
registrations and payments, and many writers at once (requests plus a CSV import
through its own connection, as `portal import` does).

The real `portal` command runs as a subprocess on a free loopback port against a
SQLite file in the test's tmp dir. Every wait has a deadline and every process the
tests start is stopped (or killed) before the test ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from portal import cli
from portal import db as portal_db
from portal.billing.importer import import_file, import_text

from conftest import free_port
from helpers import csrf_token
from sample_data import GOOD_PASSWORD

CARD = {
    "card_number": "4242 4242 4242 4242",
    "expiry": "12/39",
    "security_code": "737",
    "name_on_card": "Pat Payer",
    "action": "pay",
}
CONFIRMATION = re.compile(r"PAY-[A-Z2-9]{4}-[A-Z2-9]{4}")
REGISTERED = "You have successfully registered"
LOCKED = "database is locked"
START_TIMEOUT = 30.0


# --- the real `portal` command ------------------------------------------------------------


def portal_env(database: Path, port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE"] = str(database)
    # Many residents' registrations from one test address: the guide's two numbers and
    # look-up budgets wide enough for the load (test_account_claims.py tests both).
    env["PORTAL_ACCOUNT_PROOF"] = "none"
    env["PORTAL_LOOKUPS_PER_ADDRESS"] = env["PORTAL_LOOKUPS_OVERALL"] = "1000000"
    if port is not None:
        env["PORTAL_BASE_URL"] = f"http://127.0.0.1:{port}"
    return env


def run_portal(database: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=portal_env(database),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Served:
    """`portal serve` as a subprocess on a free loopback port."""

    def __init__(self, database: Path, log: Path) -> None:
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Served:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(self.port)],
            env=portal_env(self.database, self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"portal serve exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"portal serve did not answer:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@contextmanager
def served(database: Path, log: Path) -> Iterator[Served]:
    server = Served(database, log).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """`portal demo` once per module; each test works on its own copy of the file."""
    database = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    done = run_portal(database, "demo")
    assert done.returncode == 0, done.stderr
    printed = re.findall(r"Customer Number (\d+)\s+Account Number (\d+)", done.stdout)
    assert len(printed) == 3, done.stdout
    # These tests count registrations: take out the demo sign-in `portal demo` adds.
    conn = sqlite3.connect(database)
    with conn:
        conn.execute("DELETE FROM user_accounts")
        conn.execute("DELETE FROM users WHERE username = 'demo'")
    conn.close()
    return database, printed


@pytest.fixture
def demo_db(demo_template, tmp_path) -> tuple[Path, list[tuple[str, str]]]:
    template, printed = demo_template
    database = tmp_path / "portal.sqlite3"
    shutil.copyfile(template, database)  # no -wal: `portal demo` closed its connection
    return database, printed


def rows(database: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(database, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def active_accounts(database: Path) -> list[tuple[str, str]]:
    return [
        (r["customer_number"], r["account_number"])
        for r in rows(
            database,
            "SELECT customer_number, account_number FROM service_accounts"
            " WHERE status = 'active' ORDER BY id",
        )
    ]


# --- a resident over real HTTP ------------------------------------------------------------


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


@dataclass
class Ledger:
    """What the stream saw: answered successes, and every response that was a fault."""

    registered: list[str] = field(default_factory=list)
    paid: list[tuple[str, str]] = field(default_factory=list)  # (confirmation, gateway ref)
    faults: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, response: httpx.Response, expected: int) -> httpx.Response:
        fault = response.status_code >= 500 or LOCKED in response.text
        if fault or response.status_code != expected:
            with self.lock:
                self.faults.append(
                    f"{response.request.method} {response.request.url.path}"
                    f" -> {response.status_code}: {response.text[:300]}"
                )
            raise Fault(response.status_code)
        return response

    def record(self, exc: Exception) -> None:
        if not isinstance(exc, Fault):  # a Fault is in the list already
            with self.lock:
                self.faults.append(f"{type(exc).__name__}: {exc}")


class Fault(Exception):
    """A response that a resident should not get (already in the ledger)."""


class Resident:
    """One browser: its own cookies, one request at a time."""

    def __init__(self, base_url: str, ledger: Ledger) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20)
        self.ledger = ledger

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, data: dict, expected: int) -> httpx.Response:
        if "portal_csrf" not in self.http.cookies:
            self.ledger.check(self.http.get("/"), 200)
        data = {**data, "_csrf_token": self.http.cookies["portal_csrf"]}
        return self.ledger.check(self.http.post(path, data=data), expected)

    def register(self, username: str, customer: str, account: str) -> None:
        response = self.post(
            "/register",
            {
                "username": username,
                "password": GOOD_PASSWORD,
                "confirm_password": GOOD_PASSWORD,
                "customer_number": customer,
                "account_number": account,
                "paperless": "yes",
                "email": f"{username}@example.com",
                "confirm_email": f"{username}@example.com",
            },
            200,
        )
        assert REGISTERED in response.text
        with self.ledger.lock:
            self.ledger.registered.append(username)

    def pay(self, customer: str, account: str, amount: str = "12.34") -> None:
        form = self.post("/pay", {"customer_number": customer, "account_number": account}, 200)
        start = self.post(
            "/pay/confirm",
            {
                "account_token": hidden(form.text, "account_token"),
                "idempotency_key": hidden(form.text, "idempotency_key"),
                "amount": amount,
                "method": "card",
                "receipt_email": "payer@example.com",
            },
            303,
        )
        checkout = start.headers["location"]
        back = self.post(checkout, CARD, 303).headers["location"]
        ref = back.rsplit("ref=", 1)[1]
        receipt = self.ledger.check(self.http.get(back), 303).headers["location"]
        page = self.ledger.check(self.http.get(receipt), 200)
        assert "Payment confirmation" in page.text
        number = CONFIRMATION.search(page.text).group(0)
        with self.ledger.lock:
            self.ledger.paid.append((number, ref))


def stream(
    base_url: str,
    ledger: Ledger,
    stop: threading.Event,
    registrations: list[tuple[str, str, str]],
    payers: list[tuple[str, str]],
    threads: int,
) -> list[threading.Thread]:
    """Start `threads` residents: even ones register, odd ones pay, until `stop`."""
    todo = iter(registrations)
    todo_lock = threading.Lock()

    def registrar() -> None:
        resident = Resident(base_url, ledger)
        try:
            while not stop.is_set():
                with todo_lock:
                    item = next(todo, None)
                if item is None:
                    return
                resident.register(*item)
        except httpx.TransportError:
            return  # the server went away
        except Exception as exc:
            ledger.record(exc)
        finally:
            resident.close()

    def payer(index: int) -> None:
        resident = Resident(base_url, ledger)
        try:
            n = index
            while not stop.is_set():
                resident.pay(*payers[n % len(payers)])
                n += threads
        except httpx.TransportError:
            return
        except Exception as exc:
            ledger.record(exc)
        finally:
            resident.close()

    started = []
    for i in range(threads):
        target: Callable = registrar if i % 2 == 0 else (lambda i=i: payer(i))
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        started.append(thread)
    return started


def join_all(threads: list[threading.Thread], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a resident thread did not finish"


def registrations_for(accounts: list[tuple[str, str]], prefix: str):
    return [(f"{prefix}{n}", c, a) for n, (c, a) in enumerate(accounts)]


# --- 1. online backup while serving ----------------------------------------------------


def test_backup_while_serving_gives_consistent_copies(demo_db, tmp_path):
    database, printed = demo_db
    accounts = active_accounts(database)
    ledger, stop = Ledger(), threading.Event()
    copies, timings = [], []
    with served(database, tmp_path / "serve.log") as server:
        threads = stream(
            server.url,
            ledger,
            stop,
            registrations_for(accounts[:200], "backup"),
            accounts[200:],
            threads=4,
        )
        try:
            time.sleep(0.5)
            before = len(ledger.registered) + len(ledger.paid)
            for n in range(3):
                target = tmp_path / f"backup-{n}.sqlite3"
                started = time.perf_counter()
                done = run_portal(database, "db", "backup", str(target))
                timings.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr
                assert f"{target}: ok, " in done.stdout and "bytes" in done.stdout
                copies.append(target)
                time.sleep(0.3)
            during = len(ledger.registered) + len(ledger.paid) - before
        finally:
            stop.set()
            join_all(threads)
    assert ledger.faults == []
    assert during > 0, "no write was answered while the backups ran"
    assert not list(tmp_path.glob("*.partial*"))

    live_users = rows(database, "SELECT count(*) FROM users")[0][0]
    seen_users = 0
    for copy in copies:
        assert [r[0] for r in rows(copy, "PRAGMA integrity_check")] == ["ok"]
        assert rows(copy, "PRAGMA journal_mode")[0][0] == "delete"
        assert not Path(f"{copy}-wal").exists()
        assert rows(copy, "SELECT count(*) FROM service_accounts")[0][0] == 300
        for customer, account in printed:
            assert rows(
                copy,
                "SELECT 1 FROM service_accounts WHERE customer_number = ? AND account_number = ?",
                (customer, account),
            ), (customer, account)
        # One snapshot: every registration in the copy is whole (user, link, token, email).
        users = rows(copy, "SELECT id, email FROM users")
        assert len(users) >= seen_users
        seen_users = len(users)
        for user in users:
            assert rows(copy, "SELECT 1 FROM user_accounts WHERE user_id = ?", (user["id"],))
            assert rows(copy, "SELECT 1 FROM tokens WHERE user_id = ?", (user["id"],))
            assert rows(copy, "SELECT 1 FROM outbox WHERE to_addr = ?", (user["email"],))
        half = rows(
            copy,
            "SELECT p.id FROM payments p WHERE p.status = 'succeeded' AND (p.confirmation_number"
            " IS NULL OR NOT EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = p.id"
            " AND e.status = 'succeeded'))",
        )
        assert half == []
    assert seen_users <= live_users
    print(
        f"backup of {copies[-1].stat().st_size:,} bytes under load:"
        f" {', '.join(f'{t:.2f} s' for t in timings)};"
        f" {len(ledger.registered)} registrations, {len(ledger.paid)} payments answered"
    )


def test_backup_refuses_to_overwrite_and_fails_loudly(tmp_path, monkeypatch, capsys):
    database = tmp_path / "portal.sqlite3"
    monkeypatch.setenv("PORTAL_DATABASE", str(database))
    target = tmp_path / "copy.sqlite3"

    assert cli.main(["db", "backup", str(target)]) == 2
    assert "no database" in capsys.readouterr().err
    assert not database.exists()  # a backup never creates the database it copies

    portal_db.upgrade(database)
    conn = portal_db.connect_sync(database)
    import_text(
        conn,
        "accounts",
        "customer_number,account_number,name,service_address,status\n"
        + "".join(f"{n},{n + 500},Name {n},{n} Holt Blvd,active\n" for n in range(1, 2001)),
    )
    conn.close()

    target.write_text("yesterday's backup")
    assert cli.main(["db", "backup", str(target)]) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert target.read_text() == "yesterday's backup"

    Path(f"{target}.partial").write_text("left by a crash")
    assert cli.main(["db", "backup", "--force", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"{target}: ok, {target.stat().st_size:,} bytes" in out
    assert rows(target, "SELECT count(*) FROM service_accounts")[0][0] == 2000
    assert not Path(f"{target}.partial").exists()

    assert cli.main(["db", "backup", "--force", str(database)]) == 2
    assert "is the live database" in capsys.readouterr().err

    # A damaged database: the copy fails its integrity check, no file is left behind.
    index_page = rows(
        database,
        "SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name ="
        " 'service_accounts' ORDER BY rootpage LIMIT 1",
    )[0][0]
    page_size = rows(database, "PRAGMA page_size")[0][0]
    with open(database, "r+b") as raw:
        raw.seek((index_page - 1) * page_size)
        raw.write(b"\xff" * 16)  # no valid b-tree page header
    broken = tmp_path / "broken.sqlite3"
    assert cli.main(["db", "backup", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("portal: backup failed") and err.count("\n") == 1
    assert not broken.exists() and not list(tmp_path.glob("broken*"))


# --- 2. SIGKILL in the middle of a stream ---------------------------------------------


def test_sigkill_mid_stream_loses_no_answered_write_and_leaves_no_half_state(demo_db, tmp_path):
    database, _printed = demo_db
    accounts = active_accounts(database)
    ledger, stop = Ledger(), threading.Event()
    server = Served(database, tmp_path / "serve.log").start()
    try:
        threads = stream(
            server.url,
            ledger,
            stop,
            registrations_for(accounts[:200], "crash"),
            accounts[200:],
            threads=6,
        )
        deadline = time.monotonic() + 10
        time.sleep(1.5)
        while not (ledger.registered and ledger.paid) and time.monotonic() < deadline:
            time.sleep(0.1)
        server.kill()
        stop.set()
        join_all(threads)
    finally:
        server.stop()
    assert ledger.faults == [], ledger.faults
    assert ledger.registered and ledger.paid, "nothing was answered before the kill"

    with served(database, tmp_path / "serve-again.log") as again:
        assert [r[0] for r in rows(database, "PRAGMA integrity_check")] == ["ok"]
        for username in ledger.registered:
            [user] = rows(database, "SELECT * FROM users WHERE username = ?", (username,))
            assert rows(database, "SELECT 1 FROM user_accounts WHERE user_id = ?", (user["id"],))
        for number, ref in ledger.paid:
            [payment] = rows(
                database, "SELECT * FROM payments WHERE confirmation_number = ?", (number,)
            )
            assert payment["status"] == "succeeded" and payment["gateway_ref"] == ref

        # No half registration: every user row came with its link, token and email.
        assert (
            rows(
                database,
                "SELECT username FROM users u WHERE NOT EXISTS (SELECT 1 FROM user_accounts ua"
                " WHERE ua.user_id = u.id) OR NOT EXISTS (SELECT 1 FROM tokens t WHERE"
                " t.user_id = u.id) OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.to_addr = u.email)",
            )
            == []
        )
        # No half payment: a settled payment agrees with its gateway session, has its
        # events and confirmation; a completed session belongs to a payment.
        assert (
            rows(
                database,
                "SELECT p.id FROM payments p LEFT JOIN sandbox_sessions s ON s.id = p.gateway_ref"
                " WHERE p.status != 'pending' AND (s.status IS NOT p.status"
                " OR NOT EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = p.id"
                " AND e.status = p.status))"
                " OR (p.status = 'succeeded') != (p.confirmation_number IS NOT NULL)",
            )
            == []
        )
        assert (
            rows(
                database,
                "SELECT s.id FROM sandbox_sessions s WHERE s.status != 'open' AND NOT EXISTS"
                " (SELECT 1 FROM payments p WHERE p.gateway_ref = s.id)",
            )
            == []
        )
        # Paid at the gateway but killed before the portal settled it: the resident's
        # return (or a reload of it) settles it now.
        unsettled = rows(
            database,
            "SELECT p.id, s.id AS ref FROM payments p JOIN sandbox_sessions s"
            " ON s.id = p.gateway_ref WHERE p.status = 'pending' AND s.status != 'open'",
        )
        for payment in unsettled:
            back = httpx.get(f"{again.url}/pay/return?ref={payment['ref']}", timeout=10)
            assert back.status_code == 303 and "/pay/receipt/" in back.headers["location"]
            [after] = rows(database, "SELECT status FROM payments WHERE id = ?", (payment["id"],))
            assert after["status"] == "succeeded"
        with_mail = rows(
            database,
            "SELECT confirmation_number FROM payments p WHERE status = 'succeeded' AND NOT EXISTS"
            " (SELECT 1 FROM outbox o WHERE o.subject LIKE '%' || p.confirmation_number || '%')",
        )
        assert with_mail == []
        # The portal keeps working after the crash.
        resident = Resident(again.url, Ledger())
        try:
            resident.register("aftercrash", *accounts[-1])  # payers never register
            resident.pay(*accounts[-2])
        finally:
            resident.close()
    print(
        f"killed after {len(ledger.registered)} registrations and {len(ledger.paid)} payments"
        f" were answered; {len(unsettled)} paid-but-unsettled payment(s) settled on return"
    )


# --- 3. many writers at once, in process -------------------------------------------------


ACCOUNTS_HEADER = "customer_number,account_number,name,service_address,status\n"


def _accounts_csv(path: Path, first: int, count: int, status: str = "active") -> Path:
    path.write_text(
        ACCOUNTS_HEADER
        + "".join(
            f"{n},{n + 7},Resident {n},{n % 3000} Euclid Ave,{status}\n"
            for n in range(first, first + count)
        ),
        encoding="utf-8",
    )
    return path


async def test_many_concurrent_writers_never_see_a_locked_database(tmp_path):
    """Registrations, payments (two tabs confirming at once, each with its own form's
    key) and CSV imports through their own connection, all at the same moment.

    Requests go over real sockets to `portal serve`: the in-process AsyncTestClient
    runs one request at a time, so it cannot make writers meet."""
    database = tmp_path / "portal.sqlite3"
    portal_db.upgrade(database)
    conn = portal_db.connect_sync(database)
    import_file(conn, "accounts", _accounts_csv(tmp_path / "residents.csv", 1000, 80))
    conn.close()
    residents = [(str(n), str(n + 7)) for n in range(1000, 1080)]
    answers: list[tuple[str, int, str, float, float]] = []  # path, status, text, sent, answered
    registered: list[str] = []
    paid: list[str] = []
    imports: list[tuple[float, float]] = []

    def import_in_thread() -> None:
        """Like `portal import`: its own connection, one BEGIN IMMEDIATE transaction of
        20,000 rows, three times (every row changes each time)."""
        conn = portal_db.connect_sync(database)
        try:
            for status in ("active", "closed", "active"):
                path = _accounts_csv(tmp_path / "import.csv", 100_000, 20_000, status)
                began = time.monotonic()
                result = import_file(conn, "accounts", path)
                imports.append((began, time.monotonic()))
                assert result.changed == 20_000, result
        finally:
            conn.close()

    with served(database, tmp_path / "serve.log") as server:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=100)
        ) as http:
            token = (await http.get("/")).cookies["portal_csrf"]

            async def send(method: str, path: str, data: dict | None = None) -> httpx.Response:
                sent = time.monotonic()
                if data is None:
                    response = await http.get(path)
                else:
                    response = await http.post(path, data={**data, "_csrf_token": token})
                answers.append((path, response.status_code, response.text, sent, time.monotonic()))
                return response

            async def register(n: int) -> None:
                customer, account = residents[n]
                username = f"many{n}"
                response = await send(
                    "POST",
                    "/register",
                    {
                        "username": username,
                        "password": GOOD_PASSWORD,
                        "confirm_password": GOOD_PASSWORD,
                        "customer_number": customer,
                        "account_number": account,
                        "printed": "yes",
                        "email": f"{username}@example.com",
                        "confirm_email": f"{username}@example.com",
                    },
                )
                if response.status_code == 200 and REGISTERED in response.text:
                    registered.append(username)

            async def pay(n: int) -> None:
                customer, account = residents[40 + n]
                form = await send(
                    "POST", "/pay", {"customer_number": customer, "account_number": account}
                )
                assert form.status_code == 200
                data = {
                    "account_token": hidden(form.text, "account_token"),
                    "amount": f"{10 + n}.00",
                    "method": "card",
                    "receipt_email": "",
                }
                # Two tabs of the same resident confirm at once, each with its own key.
                starts = await asyncio.gather(
                    *(
                        send(
                            "POST",
                            "/pay/confirm",
                            {**data, "idempotency_key": f"fault-key-{n:04d}-{tab}-xxxxxx"},
                        )
                        for tab in range(2)
                    )
                )
                for start in starts:
                    assert start.status_code == 303, start.text
                    done = await send("POST", start.headers["location"], CARD)
                    back = await send("GET", done.headers["location"])
                    page = await send("GET", back.headers["location"])
                    if page.status_code == 200 and "Payment confirmation" in page.text:
                        paid.append(CONFIRMATION.search(page.text).group(0))

            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(
                    asyncio.to_thread(import_in_thread),
                    *(register(n) for n in range(40)),
                    *(pay(n) for n in range(20)),
                ),
                90,
            )
            elapsed = time.perf_counter() - started

    faults = [(p, s, t[:300]) for p, s, t, *_ in answers if s >= 500 or LOCKED in t]
    assert faults == []
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
    assert len(imports) == 3
    writes = [a for a in answers if a[0] != "/pay" and "/pay/receipt/" not in a[0]]
    overlapped = [a for a in writes if any(a[3] < e and a[4] > b for b, e in imports)]
    assert overlapped, "no write was in flight while an import was writing"
    assert sorted(registered) == sorted(f"many{n}" for n in range(40))
    assert len(paid) == 40 and len(set(paid)) == 40
    stored = {r[0] for r in rows(database, "SELECT username FROM users")}
    assert stored == set(registered)
    settled = rows(database, "SELECT confirmation_number FROM payments WHERE status = 'succeeded'")
    assert sorted(r[0] for r in settled) == sorted(paid)
    assert rows(database, "SELECT count(*) FROM payments")[0][0] == 40
    assert rows(database, "SELECT count(*) FROM service_accounts")[0][0] == 20_080
    assert rows(database, "PRAGMA integrity_check")[0][0] == "ok"
    print(
        f"{len(answers)} requests ({len(overlapped)} writes in flight during an import) and"
        f" {len(imports)} imports of 20,000 rows at once in {elapsed:.1f} s"
    )


async def test_a_long_import_makes_residents_wait_instead_of_failing(settings, client, tmp_path):
    """An import holds the write lock for its whole transaction; a big one (a city's two
    years of usage) takes longer than SQLite's old 5 s busy timeout. A resident who
    registers meanwhile waits for it, and is not shown "something went wrong"."""
    database = settings.database
    portal_db.upgrade(database)
    conn = portal_db.connect_sync(database)
    import_file(conn, "accounts", _accounts_csv(tmp_path / "residents.csv", 1000, 2))
    conn.close()
    token = await csrf_token(client)
    holding, hold_for = threading.Event(), 6.0

    def long_import() -> None:
        conn = portal_db.connect_sync(database)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE service_accounts SET updated_at = updated_at")
            holding.set()
            time.sleep(hold_for)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=long_import, daemon=True)
    thread.start()
    assert holding.wait(10)
    started = time.monotonic()
    response = await client.post(
        "/register",
        data={
            "username": "patient1",
            "password": GOOD_PASSWORD,
            "confirm_password": GOOD_PASSWORD,
            "customer_number": "1000",
            "account_number": "1007",
            "printed": "yes",
            "email": "patient1@example.com",
            "confirm_email": "patient1@example.com",
            "_csrf_token": token,
        },
    )
    waited = time.monotonic() - started
    thread.join(hold_for + 10)
    assert not thread.is_alive()
    assert response.status_code == 200 and REGISTERED in response.text, response.status_code
    assert waited > hold_for - 1  # it really waited for the import
    assert rows(database, "SELECT username FROM users")[0][0] == "patient1"


async def test_smtp_down_during_registration_then_delivered_once(settings):
    """The resident registers while the mail server is down: the registration succeeds,
    and the verification email goes out once the server is back, exactly once."""
    import sqlite3 as _sqlite3
    from dataclasses import replace

    from aiosmtpd.controller import Controller
    from litestar.testing import AsyncTestClient

    from portal.app import create_app
    from portal.db import Database
    from portal.mail.sender import OutboxSender

    from conftest import Mailbox, _Collect, free_port
    from resident_steps import post_form, registration
    from sample_data import load_billing

    port = free_port()  # nothing listens here yet
    down = replace(settings, smtp_host="127.0.0.1", smtp_port=port)
    load_billing(down.database)
    app = create_app(down)
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        response = await post_form(client, "/register", registration())
        assert response.status_code == 200 and "You have successfully registered" in response.text
        # The app's own background sender tries, fails, and keeps the message.
        conn = _sqlite3.connect(down.database)
        for _ in range(100):
            row = conn.execute("SELECT attempts, sent_at, last_error FROM outbox").fetchone()
            if row[0] >= 1:
                break
            await asyncio.sleep(0.1)
        assert row[0] >= 1 and row[1] is None and row[2]
        mailbox = Mailbox("127.0.0.1", port)
        controller = Controller(_Collect(mailbox), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            conn.execute(
                "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000000Z'"
            )  # the wait is over
            conn.commit()
            [message] = await asyncio.to_thread(mailbox.wait_for, 1, 15)
            assert (
                message["To"] == "maria@example.com" and "verificationcode=" in message.as_string()
            )
            # Sent means marked sent: once it is, another round (run here and now,
            # not waited for) has nothing to send, and the mailbox still holds one.
            for _ in range(100):
                if conn.execute("SELECT sent_at FROM outbox").fetchone()[0]:
                    break
                await asyncio.sleep(0.1)
            assert conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone() == (
                0,
            )
            # The round runs on a sender of its own, on this test's event loop, as a
            # second portal process would: the app's sender lives on the test client's
            # loop, and its database lock cannot be waited on from here (when the app's
            # sender held it, that raised "bound to a different event loop").
            other = Database(down.database)
            await other.open()
            try:
                assert await OutboxSender(down, other).send_due() == 0
            finally:
                await other.close()
            assert len(mailbox.messages) == 1
        finally:
            controller.stop()
            conn.close()
