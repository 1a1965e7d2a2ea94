"""The `portal` command: serve, db upgrade, demo, import.

portal serve [--host H] [--port P] [--reload] [--unsafe-public-dev]
portal db upgrade
portal db backup FILE [--force] [--quiet] | portal db backup --keep N DIR
portal db verify-backup FILE
portal db restore FILE [--force]
portal check
portal demo
portal import accounts|bills|usage FILE.csv [--quiet]
portal export payments [--date D] [--output FILE] [--quiet]
portal payments reconcile [--minutes N]
portal staff add USERNAME --role csr|supervisor --email ADDRESS | list | disable USERNAME
portal jobs run [--now ISO-8601]

Long commands show a progress bar on a terminal (stderr), print one summary line at the
end, and with --quiet print nothing but errors (portal.progress).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from portal import db
from portal.progress import Meter, meter_for
from portal.settings import TEST_GATEWAYS, Settings, SettingsError

INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)


def _error(message: str, status: int = 2) -> int:
    """Say what went wrong on stderr, as `portal: ...`; returns the exit status."""
    print(f"portal: {message}", file=sys.stderr)
    return status


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"portal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serve_host_problem(settings: Settings, host: str, unsafe_public_dev: bool) -> str | None:
    """Why `portal serve --host HOST` is refused, or None.

    Development shows every emailed reset link at /dev/mailbox and signs gateway events
    with a public key, so it listens on this machine only unless the operator insists."""
    import ipaddress

    if settings.production or unsafe_public_dev:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"--host {host} would let other machines reach a development portal, whose"
        " /dev/mailbox shows every password-reset link; use 127.0.0.1, set"
        " PORTAL_ENV=production, or add --unsafe-public-dev if you really mean it"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from portal.observe.logs import uvicorn_log_config

    settings = _settings()  # refuse unsafe settings before binding the port
    problem = serve_host_problem(settings, args.host, args.unsafe_public_dev)
    if problem:
        return _error(problem)
    uvicorn.run(
        "portal.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        proxy_headers=False,
        server_header=False,
        log_config=uvicorn_log_config(settings.log_format),
        access_log=False,  # the app writes one line per request, with its request id
        log_level="info",
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()
    applied = db.upgrade(settings.database)
    print(f"{settings.database}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    if args.keep is not None:
        return cmd_db_backup_daily(args)
    settings = _settings()
    source, target = Path(settings.database), Path(args.file)
    if not source.is_file():
        return _error(f"no database at {source}")
    if target.exists() and target.resolve() == source.resolve():
        return _error(f"{target} is the live database; choose another file")
    if target.exists() and not args.force:
        return _error(f"{target} already exists; use --force to replace it")
    if not target.parent.is_dir():
        return _error(f"folder {target.parent} does not exist")
    from portal.observe import backups

    started = time.perf_counter()
    try:
        with meter_for(args.quiet) as meter:
            result, size = backups.backup(source, target, meter)
    except KeyboardInterrupt:
        backups.remove_partial(target)
        return _error(f"backup interrupted; nothing was written to {target}", INTERRUPTED)
    except (sqlite3.Error, OSError) as exc:
        backups.remove_partial(target)
        return _error(f"backup failed: {' '.join(str(exc).split())}", 1)
    if result != "ok":
        backups.remove_partial(target)
        return _error(f"backup failed its integrity check: {result[:300]}", 1)
    if not args.quiet:
        print(f"{target}: ok, {size:,} bytes in {time.perf_counter() - started:.2f} s")
    return 0


def cmd_db_backup_daily(args: argparse.Namespace) -> int:
    """Today's copy into DIR as portal-YYYY-MM-DD.sqlite3 (again the same day replaces
    it), then delete all but the newest N copies. For a daily timer."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from portal.observe import backups

    folder = Path(args.file)
    if args.keep < 1:
        return _error("--keep must be 1 or more")
    if not folder.is_dir():
        return _error(f"folder {folder} does not exist")
    today = datetime.now(ZoneInfo(_settings().timezone)).date()
    args.file, args.force = str(folder / backups.daily_name(today)), True
    args.keep, keep = None, args.keep
    status = cmd_db_backup(args)
    if status == 0:
        for path in backups.prune(folder, keep):
            print(f"{path}: deleted (keeping the newest {keep})")
    return status


def cmd_db_verify_backup(args: argparse.Namespace) -> int:
    from portal.observe import backups

    verdict = backups.verify(Path(args.file))
    print(f"{args.file}: {'ok, ' if verdict.ok else 'NOT USABLE: '}{verdict.detail}")
    return 0 if verdict.ok else 1


def cmd_db_restore(args: argparse.Namespace) -> int:
    """Put a backup in place of PORTAL_DATABASE. The portal must be stopped; an existing
    database is replaced only with --force, and is kept beside it, not deleted."""
    from datetime import UTC, datetime

    from portal.observe import backups

    settings = _settings()
    source, live = Path(args.file), Path(settings.database)
    if not source.is_file():
        return _error(f"{source} is not a file")
    if live.exists() and source.resolve() == live.resolve():
        return _error(f"{source} is the live database itself")
    verdict = backups.verify(source)
    if not verdict.ok:
        return _error(f"{source} cannot be restored: {verdict.detail}", 1)
    kept = None
    if live.exists():
        if backups.in_use(live):
            return _error(f"{live} is in use; stop the portal (systemctl stop portal) first")
        if not args.force:
            return _error(
                f"{live} already exists; use --force to replace it"
                " (it is kept beside it, not deleted)"
            )
        kept = backups.set_aside(live, f"before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    live.parent.mkdir(parents=True, exist_ok=True)
    try:
        with meter_for(args.quiet) as meter:
            size = backups.restore(source, live, meter)
    except (sqlite3.Error, OSError) as exc:
        print(f"portal: restore failed: {' '.join(str(exc).split())}", file=sys.stderr)
        if kept:
            print(f"portal: the previous database is still at {kept}", file=sys.stderr)
        return 1
    if args.quiet:
        return 0
    print(f"{live}: restored from {source} ({verdict.detail}); {size:,} bytes")
    if kept:
        print(f"The previous database is kept as {kept}")
    if verdict.version is not None and verdict.version < db.migrations()[-1][0]:
        print("It is at an older migration: run `portal db upgrade` (or start the portal).")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from portal.observe.check import run_checks

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"✗ settings: {exc}")
        return 1
    failed = 0
    for ok, line in run_checks(settings):
        print(f"{'✓' if ok else '✗'} {line}", flush=True)
        failed += not ok
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from portal.billing.demo import load_demo

    settings = _settings()
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    try:
        samples = load_demo(conn)
        login = None if settings.production else _demo_login(conn, settings, samples[0])
    finally:
        conn.close()
    print(f"Demo data loaded into {settings.database}. Try these numbers:")
    for sample in samples:
        print(
            f"  Customer Number {sample['customer_number']}  Account Number {sample['account_number']}"
            f"  ({sample['name']})"
        )
    if login:
        print(f"Login to My Account with Username {login[0]}  Password {login[1]}")
    return 0


def _demo_login(
    conn: sqlite3.Connection, settings: Settings, sample: dict[str, str]
) -> tuple[str, str]:
    """A verified sign-in linked to the first demo account (development only)."""
    from portal.accounts.demo import create_demo_login

    return create_demo_login(
        conn, settings.secret_key, sample["customer_number"], sample["account_number"]
    )


def cmd_import(args: argparse.Namespace) -> int:
    from portal.billing.importer import ImportFailed, ImportInterrupted, import_file
    from portal.billing.notify import bill_notifier
    from portal.staff.search_index import refresh_sync

    settings = _settings()
    path = Path(args.file)
    if not path.is_file():
        return _error(f"{path} is not a file")
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    # A batch's commit skips the fsync that holds the write lock (residents wait behind
    # it, and on a busy disk it can take 100 ms or more); the checkpoint after it, which
    # holds no lock, still syncs. A power cut can only lose the last batches, which
    # running the file again writes. No email of theirs can have gone out: the sender's
    # own write (synchronous=FULL) before each email makes everything before it durable.
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    try:
        with meter_for(args.quiet) as meter:
            result = import_file(conn, args.kind, path, bill_notifier(settings), meter)
        if args.kind == "accounts":
            refresh_sync(conn)  # the staff search index, now rather than at the next search
    except ImportInterrupted as stop:
        print(f"{path}: {_interrupted_import(stop)}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print(f"{path}: interrupted before writing; nothing was imported", file=sys.stderr)
        return INTERRUPTED
    except ImportFailed as failed:
        print(
            f"{path}: nothing was imported; fix these rows and import the file again:",
            file=sys.stderr,
        )
        for error in failed.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if not args.quiet:
        print(f"{path}: {result} in {time.perf_counter() - started:.1f} s")
    return 0


def _interrupted_import(stop) -> str:
    if stop.stage == "writing rows" and stop.written == stop.total:
        return "interrupted after the last batch was committed; the whole file is imported"
    if stop.written:
        return (
            f"interrupted while writing rows; {stop.written:,} of {stop.total:,} rows are"
            " imported, the rest are not. Import the same file again to complete it: the rows"
            " already in are left as they are."
        )
    where = f" ({stop.done:,} of {stop.total:,})" if stop.total is not None else ""
    return f"interrupted while {stop.stage}{where}; nothing was imported. Import the file again."


def cmd_export(args: argparse.Namespace) -> int:
    if args.what == "delivery":
        return cmd_export_delivery(args)
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from portal.payments.export import export_batch

    settings = _settings()
    zone = ZoneInfo(settings.timezone)
    try:
        batch = date.fromisoformat(args.date) if args.date else datetime.now(zone).date()
    except ValueError:
        return _error(f"--date must be like 2026-11-26, not {args.date!r}")
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    test_mode = settings.gateway in TEST_GATEWAYS or settings.stripe_secret_key.startswith(
        ("sk_test_", "rk_test_")
    )
    try:
        with meter_for(args.quiet) as meter:
            text, count = export_batch(conn, batch, zone, meter, test_mode=test_mode)
    finally:
        conn.close()
    where = "standard output"
    if args.output:
        output = Path(args.output)
        if test_mode and not output.name.upper().startswith("TEST"):
            output = output.with_name(f"TEST-{output.name}")  # never mistaken for real money
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {output}: {exc.strerror or exc}")
        where = str(output)
    else:
        sys.stdout.write(text)
    if not args.quiet:
        kind = "TEST payment(s) (test gateway or key)" if test_mode else "payment(s)"
        print(f"batch {batch}: {count} {kind} written to {where}", file=sys.stderr)
    return 0


def cmd_export_delivery(args: argparse.Namespace) -> int:
    """`portal export delivery`: every linked account's bill delivery (accounts/delivery_export.py)."""
    from portal.accounts.delivery_export import export_delivery

    if args.date:
        return _error("--date is for payments: the delivery file is always today's snapshot")
    settings = _settings()
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    where = args.output or "standard output"
    try:
        with meter_for(args.quiet) as meter:
            if args.output:
                # Whole or not at all: the billing system may pick the file up at any
                # moment, so it is written beside and renamed when complete.
                output = Path(args.output)
                part = output.with_name(output.name + ".part")
                try:
                    with part.open("w", encoding="utf-8", newline="") as out:
                        count = export_delivery(conn, out, meter)
                    part.replace(output)
                except OSError as exc:
                    return _error(f"cannot write {args.output}: {exc.strerror or exc}")
                finally:
                    part.unlink(missing_ok=True)
            else:
                count = export_delivery(conn, sys.stdout, meter)
    finally:
        conn.close()
    if not args.quiet:
        print(f"bill delivery of {count} account(s) written to {where}", file=sys.stderr)
    return 0


def cmd_payments_reconcile(args: argparse.Namespace) -> int:
    import asyncio

    from portal.db import Database
    from portal.mail import Mailer
    from portal.payments.service import PaymentsService
    from portal.payments.stripe_gateway import StripeGateway
    from portal.payments.trail import reconcile
    from portal.templating import make_environment

    settings = _settings()
    if settings.gateway != "stripe":
        return _error("reconcile is for PORTAL_GATEWAY=stripe; the sandbox settles at once")

    async def run() -> dict[str, int]:
        database = Database(settings.database)
        await database.open()
        gateway = StripeGateway(settings)
        try:
            mailer = Mailer(settings, make_environment(settings))
            return await reconcile(
                PaymentsService(database, settings, mailer, gateway), args.minutes
            )
        finally:
            await gateway.close()
            await database.close()

    counts = asyncio.run(run())
    print(
        f"{counts['checked']} payment(s) pending over {args.minutes} min checked:"
        f" {counts['changed']} settled or changed, {counts['unavailable']} not answered by Stripe"
    )
    return 1 if counts["unavailable"] else 0


def cmd_staff(args: argparse.Namespace) -> int:
    from portal.staff.accounts import StaffAdminError, add_staff, disable_staff, list_staff

    settings = _settings()
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    try:
        if args.staff_command == "add":
            link = add_staff(conn, settings, args.username, args.role, args.email)
            print(f"Staff member {args.username} ({args.role}) added. Send them this one-time")
            print(f"enrolment link (it works once, for 3 days):\n  {link}")
        elif args.staff_command == "disable":
            disable_staff(conn, args.username)
            print(f"Staff member {args.username} disabled; their sessions ended.")
        else:
            for row in list_staff(conn):
                state = (
                    "disabled"
                    if row["disabled_at"]
                    else "active"
                    if row["enrolled_at"]
                    else "not enrolled"
                )
                print(f"{row['username']}\t{row['role']}\t{row['email']}\t{state}")
    except StaffAdminError as exc:
        return _error(str(exc))
    finally:
        conn.close()
    return 0


def cmd_notice(args: argparse.Namespace) -> int:
    """`portal notice set|clear|show`: the service notice on every page (pages/notice.py)."""
    from portal.pages.notice import CURRENT, clear_notice, set_notice, text_problem

    settings = _settings()
    if args.notice_command == "set":
        english, spanish = args.en.strip(), args.es.strip()
        problem = text_problem(english, "English") or text_problem(spanish, "Spanish")
        if problem:
            return _error(f"notice not set: {problem}")
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    try:
        if args.notice_command == "set":
            set_notice(conn, english, spanish)
            print(f"Notice set; pages show it within {settings.notice_refresh_seconds} s.")
        elif args.notice_command == "clear":
            if clear_notice(conn):
                print(f"Notice cleared; pages drop it within {settings.notice_refresh_seconds} s.")
            else:
                print("There was no notice.")
        else:
            row = conn.execute(CURRENT).fetchone()
            if row is None:
                print("No notice.")
            else:
                print(f"Set at {row['set_at']}\nen: {row['text_en']}\nes: {row['text_es']}")
    finally:
        conn.close()
    return 0


def cmd_jobs_run(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import UTC, datetime

    from portal.autopay.jobs import run_once, summary
    from portal.services import Services
    from portal.templating import make_environment

    settings = _settings()
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    except ValueError:
        return _error(f"--now must be like 2026-12-01T09:00:00Z, not {args.now!r}")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)

    async def run(meter: Meter) -> dict[str, int]:
        services = Services.build(settings, make_environment(settings))
        await services.db.open()
        try:
            return await run_once(services, now, meter)
        finally:
            close = getattr(services.payments.gateway, "close", None)
            if close is not None:
                await close()
            await services.db.close()

    with meter_for(args.quiet) as meter:
        counts = asyncio.run(run(meter))
    if not args.quiet:
        print(summary(counts, now))
    return 1 if counts.get("unavailable") else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="portal", description="Water utility customer portal")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary, only errors"
    )
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument(
        "--unsafe-public-dev",
        action="store_true",
        help="allow a development server on a non-loopback address (exposes /dev/mailbox)",
    )
    serve.set_defaults(func=cmd_serve)

    database = sub.add_parser("db", help="database maintenance")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)
    backup = db_sub.add_parser(
        "backup", help="copy the database to FILE while the portal runs", parents=[quiet]
    )
    backup.add_argument("file", help="the copy to write, or with --keep the folder of daily copies")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.add_argument("--keep", type=int, metavar="N", help="daily copies in a folder: keep N")
    backup.set_defaults(func=cmd_db_backup)
    verify = db_sub.add_parser("verify-backup", help="check that FILE is a whole portal database")
    verify.add_argument("file")
    verify.set_defaults(func=cmd_db_verify_backup)
    restore = db_sub.add_parser(
        "restore", help="put a backup in place (portal stopped)", parents=[quiet]
    )
    restore.add_argument("file")
    restore.add_argument("--force", action="store_true", help="replace an existing database")
    restore.set_defaults(func=cmd_db_restore)

    sub.add_parser("check", help="check settings, database, disk, mail and gateway").set_defaults(
        func=cmd_check
    )

    sub.add_parser("demo", help="load demo accounts, bills and usage").set_defaults(func=cmd_demo)

    imp = sub.add_parser(
        "import", help="import a CSV file from the billing system", parents=[quiet]
    )
    imp.add_argument("kind", choices=["accounts", "bills", "usage"])
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import)

    export = sub.add_parser("export", help="export data for the billing system", parents=[quiet])
    export.add_argument(
        "what",
        choices=["payments", "delivery"],
        help="payments: a day's batch; delivery: every linked account's paperless/printed choice",
    )
    export.add_argument("--date", help="payments: the batch's day, YYYY-MM-DD (default: today)")
    export.add_argument("--output", help="write to this file instead of standard output")
    export.add_argument("--format", choices=["csv"], default="csv", help="csv (the only one)")
    export.set_defaults(func=cmd_export)

    notice = sub.add_parser("notice", help="the service notice at the top of every page")
    notice_sub = notice.add_subparsers(dest="notice_command", required=True)
    put = notice_sub.add_parser(
        "set", help="show this notice (a boil-water notice, an office closure) on every page"
    )
    put.add_argument("--en", required=True, help="the notice in English (plain text)")
    put.add_argument("--es", required=True, help="the same notice in Spanish (plain text)")
    notice_sub.add_parser("clear", help="remove the notice")
    notice_sub.add_parser("show", help="print the notice, if one is set")
    notice.set_defaults(func=cmd_notice)

    pay = sub.add_parser("payments", help="payments with the processor")
    pay_sub = pay.add_subparsers(dest="payments_command", required=True)
    rec = pay_sub.add_parser("reconcile", help="ask the processor about pending payments")
    rec.add_argument(
        "--minutes", type=int, default=15, help="only payments pending this long (default 15)"
    )
    rec.set_defaults(func=cmd_payments_reconcile)

    staff = sub.add_parser("staff", help="Customer Services staff accounts")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", help="add a staff member; prints a one-time enrolment link")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["csr", "supervisor"])
    add.add_argument("--email", required=True)
    staff_sub.add_parser("list", help="list staff members")
    disable = staff_sub.add_parser("disable", help="disable a staff member and end their sessions")
    disable.add_argument("username")
    staff.set_defaults(func=cmd_staff)
    jobs = sub.add_parser("jobs", help="time-driven work: AutoPay, reminders, clean-up")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    run = jobs_sub.add_parser(
        "run", help="do all due work once and print a summary", parents=[quiet]
    )
    run.add_argument("--now", help="pretend it is this moment (ISO-8601, UTC if no offset)")
    run.set_defaults(func=cmd_jobs_run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
