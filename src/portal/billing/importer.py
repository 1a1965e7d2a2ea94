"""CSV imports from the billing system: accounts, bills and usage.

A file is checked whole before anything is written. Any bad row means nothing is
imported and every bad row is reported with its line number and reason. A good file is
then written as upserts, so importing the same file twice changes nothing and a changed
row updates.

The writing is done in short transactions (batches of tens of milliseconds, see Pace)
with a pause after each, so that the portal's own writes (a resident changing a profile,
paying) never wait long behind an import of a million bills. All of an account's rows
are in the same batch, and what runs for new bills (the "Your bill is ready" emails) runs
inside the batch that adds them. An import stopped part-way (Ctrl-C, a crash) keeps the
batches already committed and says how far it got (ImportInterrupted); importing the
same file again completes it, each row and each email once.
"""

from __future__ import annotations

import csv
import gc
import io
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from portal.billing.money import parse_cents
from portal.billing.numbers import number_key
from portal.db import utcnow
from portal.progress import Meter

KINDS = ("accounts", "bills", "usage")

REQUIRED = {
    "accounts": ["customer_number", "account_number", "name", "service_address", "status"],
    "bills": [
        "customer_number",
        "account_number",
        "bill_number",
        "bill_date",
        "due_date",
        "amount_due",
    ],
    "usage": ["customer_number", "account_number", "read_date", "consumption", "unit"],
}
OPTIONAL_BILL = ["period_start", "period_end", "previous_balance", "payments", "current_charges"]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"\d{1,9}(\.\d{1,4})?")


# Line breaks (CR, LF, U+2028/9), other C0/C1 controls (tab and NUL included) and the
# invisible bidirectional overrides that can make text display as something else.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def has_control_character(value: str) -> bool:
    return _CONTROL.search(value) is not None


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ImportFailed(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s); nothing was imported")
        self.errors = errors


class ImportInterrupted(KeyboardInterrupt):
    """Ctrl-C during an import, after `done` of `total` lines checked or rows written.
    `written` rows are in the database (the batches committed before the one in
    progress, which was rolled back): 0 while checking, `total` if the last batch had
    committed. Importing the same file again completes the import."""

    def __init__(self, stage: str, done: int, total: int | None, written: int) -> None:
        super().__init__(f"import interrupted while {stage}")
        self.stage = stage
        self.done = done
        self.total = total
        self.written = written


@dataclass
class ImportResult:
    kind: str
    rows: int
    changed: int
    new_bills: list[int] = field(default_factory=list)
    batches: int = 0

    def __str__(self) -> str:
        unchanged = self.rows - self.changed
        return (
            f"{self.kind}: {self.rows} rows read, {self.changed} added or updated,"
            f" {unchanged} unchanged"
        )


class _Row:
    """One CSV row being checked; collects reasons instead of stopping at the first."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reasons: list[str] = []
        self._control_checked: set[str] = set()
        # Nearly every row has no control character at all: one search instead of one
        # per field (a million-row file has twelve million fields).
        self._clean = not has_control_character("".join(values.values()))

    def text(self, name: str, required: bool = True) -> str:
        raw = self.values.get(name) or ""
        if not self._clean and has_control_character(raw):
            if name not in self._control_checked:
                self._control_checked.add(name)
                self.reasons.append(
                    f"{name} contains a line break or another control character; remove it"
                )
            return ""
        value = raw.strip()
        if required and not value:
            self.reasons.append(f"{name} is empty")
        return value

    def key(self, name: str) -> str:
        raw = self.text(name)
        key = number_key(raw)
        if raw and key is None:
            self.reasons.append(f"{name} {raw!r} is not a number")
        return key or ""

    def _parsed(self, name: str, required: bool, parse: Callable[[str], Any], expected: str) -> Any:
        """The field as `parse` reads it; None when it is empty or `parse` returns None
        (the reason then says the value is not `expected`)."""
        raw = self.text(name, required)
        if not raw:
            return None
        value = parse(raw)
        if value is None:
            self.reasons.append(f"{name} {raw!r} is not {expected}")
        return value

    def date(self, name: str, required: bool = True) -> str | None:
        return self._parsed(name, required, _iso_date, "a date like 2026-01-31")

    def cents(self, name: str, required: bool = True) -> int | None:
        return self._parsed(name, required, _cents, "an amount like 123.45")

    def quantity(self, name: str, required: bool = True) -> float | None:
        return self._parsed(name, required, _quantity, "a non-negative number")


# Cached: a monthly file of a million rows has a few distinct dates and amounts.
@lru_cache(maxsize=4096)
def _iso_date(raw: str) -> str | None:
    if not _ISO_DATE.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        return None


_cents = lru_cache(maxsize=65536)(parse_cents)


def _quantity(raw: str) -> float | None:
    return float(raw) if _NUMBER.fullmatch(raw) else None


def _read(stream: io.TextIOBase, kind: str) -> Iterator[tuple[int, dict[str, str] | RowError]]:
    reader = csv.reader(stream)
    # The header is the first row that is not blank; a file of blank lines is empty.
    header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    if header is None:
        yield 1, RowError(1, "the file is empty; expected a header row")
        return
    header = [name.strip().lstrip("\ufeff").lower() for name in header]
    missing = [name for name in REQUIRED[kind] if name not in header]
    if missing:
        line = reader.line_num
        yield line, RowError(line, "missing header column(s): " + ", ".join(missing))
        return
    ended = reader.line_num
    for values in reader:
        # A quoted cell can span lines: report the line where the row starts.
        line, ended = ended + 1, reader.line_num
        if not values or values == [""]:
            continue
        if len(values) != len(header):
            yield line, RowError(line, f"expected {len(header)} columns, found {len(values)}")
            continue
        yield line, dict(zip(header, values, strict=True))


def _account_ids(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute("SELECT customer_key, account_key, id FROM service_accounts")
    return {(c, a): i for c, a, i in rows}


def _check_accounts(row: _Row, _ids: dict) -> tuple[Any, ...]:
    status = row.text("status").lower()
    if status and status not in ("active", "closed"):
        row.reasons.append(f"status {status!r} must be active or closed")
    return (
        row.text("customer_number"),
        row.text("account_number"),
        row.key("customer_number"),
        row.key("account_number"),
        row.text("name"),
        row.text("service_address"),
        status,
    )


def _account_of(row: _Row, ids: dict) -> int | None:
    key = (row.key("customer_number"), row.key("account_number"))
    if all(key) and key not in ids:
        row.reasons.append("unknown account (import the accounts file first)")
    return ids.get(key)


def _check_bills(row: _Row, ids: dict) -> tuple[Any, ...]:
    bill_date, due_date = row.date("bill_date"), row.date("due_date")
    if bill_date and due_date and due_date < bill_date:
        row.reasons.append("due_date is before bill_date")
    return (
        _account_of(row, ids),
        row.text("bill_number"),
        bill_date,
        due_date,
        row.cents("amount_due"),
        row.date("period_start", False),
        row.date("period_end", False),
        row.cents("previous_balance", False),
        row.cents("payments", False),
        row.cents("current_charges", False),
        row.quantity("consumption", False),
    )


def _check_usage(row: _Row, ids: dict) -> tuple[Any, ...]:
    unit = {"hcf": "HCF", "gallons": "gallons"}.get(row.text("unit").lower())
    if unit is None and row.text("unit", False):
        row.reasons.append(f"unit {row.text('unit')!r} must be HCF or gallons")
    return (_account_of(row, ids), row.date("read_date"), row.quantity("consumption"), unit)


UPSERT = {
    "accounts": """
        INSERT INTO service_accounts (customer_number, account_number, customer_key,
            account_key, name, service_address, status, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (customer_key, account_key) DO UPDATE SET
            customer_number = excluded.customer_number, account_number = excluded.account_number,
            name = excluded.name, service_address = excluded.service_address,
            status = excluded.status, updated_at = excluded.updated_at
        WHERE (name, service_address, status, customer_number, account_number)
            IS NOT (excluded.name, excluded.service_address, excluded.status,
                    excluded.customer_number, excluded.account_number)
    """,
    "bills": """
        INSERT INTO bills (account_id, bill_number, bill_date, due_date, amount_due_cents,
            period_start, period_end, previous_balance_cents, payments_cents,
            current_charges_cents, consumption, imported_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (account_id, bill_number) DO UPDATE SET
            bill_date = excluded.bill_date, due_date = excluded.due_date,
            amount_due_cents = excluded.amount_due_cents, period_start = excluded.period_start,
            period_end = excluded.period_end,
            previous_balance_cents = excluded.previous_balance_cents,
            payments_cents = excluded.payments_cents,
            current_charges_cents = excluded.current_charges_cents,
            consumption = excluded.consumption, imported_at = excluded.imported_at
        WHERE (bill_date, due_date, amount_due_cents, period_start, period_end,
               previous_balance_cents, payments_cents, current_charges_cents, consumption)
            IS NOT (excluded.bill_date, excluded.due_date, excluded.amount_due_cents,
               excluded.period_start, excluded.period_end, excluded.previous_balance_cents,
               excluded.payments_cents, excluded.current_charges_cents, excluded.consumption)
    """,
    "usage": """
        INSERT INTO usage_reads (account_id, read_date, consumption, unit, imported_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (account_id, read_date) DO UPDATE SET
            consumption = excluded.consumption, unit = excluded.unit,
            imported_at = excluded.imported_at
        WHERE (consumption, unit) IS NOT (excluded.consumption, excluded.unit)
    """,
}

CHECKS: dict[str, Callable[[_Row, dict], tuple[Any, ...]]] = {
    "accounts": _check_accounts,
    "bills": _check_bills,
    "usage": _check_usage,
}
# Which positions of a checked row identify it, to catch the same key twice in one file.
IDENTITY = {"accounts": (2, 3), "bills": (0, 1), "usage": (0, 1)}


NewBillsHook = Callable[[sqlite3.Connection, list[int]], None]

# Rows between two progress reports while checking.
REPORT_EVERY = 4096


@dataclass(frozen=True)
class Pace:
    """How the write stage shares the database with the portal.

    Rows are written `rows` at a time (one executemany) and committed once a batch has
    taken `seconds`; then the import sleeps `pause` seconds. A writer that finds the
    database busy sleeps and tries again, SQLite's busy handler sleeping at most 100 ms
    between tries, so a pause longer than that always lets a waiting resident's write in:
    it waits at most one batch and one sleep, well under 250 ms. The rows are also the
    unit Ctrl-C is answered in."""

    rows: int = 250
    seconds: float = 0.05
    pause: float = 0.11


PACE = Pace()


@contextmanager
def _without_gc() -> Iterator[None]:
    """The cycle collector off while a million checked rows are built: plain tuples hold
    no cycles, and it would walk them again and again (a seventh of the check)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(checked: list[tuple[Any, ...]], kind: str, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) slices of about `size` rows; a bills slice never splits an account,
    so the bill-ready email, sent for an account's newest new bill, sees all of them."""
    start = 0
    while start < len(checked):
        end = min(start + size, len(checked))
        if kind == "bills":
            while end < len(checked) and checked[end][0] == checked[end - 1][0]:
                end += 1
        yield start, end
        start = end


def import_rows(
    conn: sqlite3.Connection,
    kind: str,
    rows: Iterable[tuple[int, dict[str, str] | RowError]],
    on_new_bills: NewBillsHook | None = None,
    meter: Meter | None = None,
    lines: int | None = None,
    pace: Pace = PACE,
) -> ImportResult:
    """Check every row, then write them all in short batches (see Pace), or none if a
    row is bad.

    on_new_bills(conn, bill_ids) runs inside the batch that adds those bills, so what it
    writes (the "Your bill is ready" emails) exists if and only if the bills do, and a
    re-run, which adds no bill twice, sends no email twice. `meter` hears the progress
    (lines of `lines` checked, then rows written); Ctrl-C raises ImportInterrupted
    after rolling back the batch in progress."""
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    meter = meter or Meter()
    stage, done, total, written = "checking rows", 0, lines, 0
    next_report = REPORT_EVERY
    try:
        meter.stage(stage, total=lines, unit="lines")
        ids = {} if kind == "accounts" else _account_ids(conn)
        errors: list[RowError] = []
        checked: list[tuple[Any, ...]] = []
        seen: dict[tuple[Any, ...], int] = {}
        with _without_gc():
            for line, values in rows:
                done = line
                if line >= next_report:
                    meter.update(line)
                    next_report = line + REPORT_EVERY
                if isinstance(values, RowError):
                    errors.append(values)
                    continue
                row = _Row(values)
                params = CHECKS[kind](row, ids)
                identity = tuple(params[i] for i in IDENTITY[kind])
                if not row.reasons and identity in seen:
                    row.reasons.append(
                        f"same {kind[:-1] if kind != 'usage' else 'read'} as line {seen[identity]}"
                    )
                seen.setdefault(identity, line)
                if row.reasons:
                    # A reason can be found twice (a column read as text and as a key).
                    errors.append(RowError(line, "; ".join(dict.fromkeys(row.reasons))))
                else:
                    checked.append(params)
        meter.update(lines or done)
        if errors:
            raise ImportFailed(errors)
        del seen
        if kind != "accounts":
            # An account's rows together (one batch each), in index order (fewer pages).
            checked.sort(key=itemgetter(0))
        now = utcnow()
        changed, new_bills, batches = 0, [], 0
        stage, done, total = "writing rows", 0, len(checked)
        meter.stage(stage, total=total, unit="rows")
        chunks = _chunks(checked, kind, pace.rows)
        chunk = next(chunks, None)
        while chunk is not None:
            if batches:
                time.sleep(pace.pause)
            conn.execute("BEGIN IMMEDIATE")
            began, before = time.perf_counter(), conn.total_changes
            if kind == "accounts":
                # Each batch's own time, taken inside its write lock: updated_at then
                # grows from one committed batch to the next, which the staff search
                # index's refresh relies on when a search runs between two batches
                # (staff/search_index.py). One time for the whole file let a refresh
                # mark later batches' accounts as indexed before they were written.
                now = utcnow()
            if kind == "bills":
                last_bill = conn.execute("SELECT coalesce(max(id), 0) FROM bills").fetchone()[0]
            while chunk is not None:
                start, done = chunk
                conn.executemany(UPSERT[kind], [(*params, now) for params in checked[start:done]])
                meter.update(done)
                chunk = next(chunks, None)
                if time.perf_counter() - began >= pace.seconds:
                    break
            changed += conn.total_changes - before
            if kind == "bills":
                added = [
                    r[0] for r in conn.execute("SELECT id FROM bills WHERE id > ?", (last_bill,))
                ]
                if added and on_new_bills is not None:
                    on_new_bills(conn, added)
                new_bills += added
            conn.execute("COMMIT")
            written, batches = done, batches + 1
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        elif stage == "writing rows":
            written = done  # Ctrl-C came right after a COMMIT
        if isinstance(exc, KeyboardInterrupt):
            raise ImportInterrupted(stage, done, total, written) from None
        raise
    return ImportResult(kind, len(checked), changed, new_bills, batches)


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without a newline counts), read in 1 MiB blocks."""
    lines, last = 0, b"\n"
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def import_file(
    conn: sqlite3.Connection,
    kind: str,
    path: Path,
    on_new_bills: NewBillsHook | None = None,
    meter: Meter | None = None,
    pace: Pace = PACE,
) -> ImportResult:
    lines = count_lines(path) if meter is not None else None
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            rows = _read(stream, kind)
            return import_rows(conn, kind, rows, on_new_bills, meter, lines, pace)
    except UnicodeDecodeError as exc:
        raise ImportFailed([RowError(0, f"the file is not UTF-8 text ({exc.reason})")]) from None


def import_text(
    conn: sqlite3.Connection,
    kind: str,
    text: str,
    on_new_bills: NewBillsHook | None = None,
    meter: Meter | None = None,
    pace: Pace = PACE,
) -> ImportResult:
    rows = _read(io.StringIO(text, newline=""), kind)
    return import_rows(conn, kind, rows, on_new_bills, meter, pace=pace)
