"""The `portal` command: serve, db upgrade, demo, import.

portal serve [--host H] [--port P] [--reload]
portal db upgrade
portal db backup FILE [--force]
portal demo
portal import accounts|bills|usage FILE.csv
portal export payments [--date D] [--output FILE]
portal payments reconcile [--minutes N]
portal jobs run [--now ISO-8601]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from portal import db
from portal.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"portal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from portal.security.logs import uvicorn_log_config

    _settings()  # refuse unsafe settings before binding the port
    uvicorn.run(
        "portal.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        proxy_headers=False,
        server_header=False,
        log_config=uvicorn_log_config(),
        log_level="info",
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()
    applied = db.upgrade(settings.database)
    print(f"{settings.database}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return 0


BACKUP_PAGES = 1024  # pages copied per backup step (4 MiB with 4 KiB pages)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_partial(partial: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)


def _backup(source_path: Path, target: Path) -> tuple[str, int]:
    """Copy the live database to `target` page by page; return (integrity, bytes).

    The source keeps one read transaction open for the whole copy: in WAL mode that
    does not block the portal's writers, and it gives every step the same snapshot, so
    the backup never restarts however busy the portal is."""
    partial = Path(f"{target}.partial")
    _remove_partial(partial)
    source = sqlite3.connect(source_path, isolation_level=None, timeout=10.0)
    try:
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # start the snapshot
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy, pages=BACKUP_PAGES, sleep=0.05)
        finally:
            copy.close()
    finally:
        source.close()
    copy = sqlite3.connect(partial, isolation_level=None)
    try:
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        result = "; ".join(row[0] for row in copy.execute("PRAGMA integrity_check"))
    finally:
        copy.close()
    if result != "ok":
        return result, 0
    _fsync(partial)
    os.replace(partial, target)
    _fsync(target.parent)
    return result, target.stat().st_size


def cmd_db_backup(args: argparse.Namespace) -> int:
    settings = _settings()
    source, target = Path(settings.database), Path(args.file)
    if not source.is_file():
        print(f"portal: no database at {source}", file=sys.stderr)
        return 2
    if target.exists() and target.resolve() == source.resolve():
        print(f"portal: {target} is the live database; choose another file", file=sys.stderr)
        return 2
    if target.exists() and not args.force:
        print(f"portal: {target} already exists; use --force to replace it", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"portal: folder {target.parent} does not exist", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        result, size = _backup(source, target)
    except (sqlite3.Error, OSError) as exc:
        _remove_partial(Path(f"{target}.partial"))
        print(f"portal: backup failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if result != "ok":
        _remove_partial(Path(f"{target}.partial"))
        print(f"portal: backup failed its integrity check: {result[:300]}", file=sys.stderr)
        return 1
    print(f"{target}: ok, {size:,} bytes in {time.perf_counter() - started:.2f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from portal.billing.demo import load_demo

    settings = _settings()
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    try:
        samples = load_demo(conn)
    finally:
        conn.close()
    print(f"Demo data loaded into {settings.database}. Try these numbers:")
    for sample in samples:
        print(
            f"  Customer Number {sample['customer_number']}  Account Number {sample['account_number']}"
            f"  ({sample['name']})"
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from portal.billing.importer import ImportFailed, import_file
    from portal.billing.notify import bill_notifier

    settings = _settings()
    path = Path(args.file)
    if not path.is_file():
        print(f"portal: {path} is not a file", file=sys.stderr)
        return 2
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    started = time.perf_counter()
    try:
        result = import_file(conn, args.kind, path, bill_notifier(settings))
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
    print(f"{path}: {result} in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from portal.payments.export import export_batch

    settings = _settings()
    zone = ZoneInfo(settings.timezone)
    try:
        batch = date.fromisoformat(args.date) if args.date else datetime.now(zone).date()
    except ValueError:
        print(f"portal: --date must be like 2026-11-26, not {args.date!r}", file=sys.stderr)
        return 2
    db.upgrade(settings.database)
    conn = db.connect_sync(settings.database)
    try:
        text, count = export_batch(conn, batch, zone)
    finally:
        conn.close()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"batch {batch}: {count} payment(s) written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
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
        print(
            "portal: reconcile is for PORTAL_GATEWAY=stripe; the sandbox settles at once",
            file=sys.stderr,
        )
        return 2

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
        print(f"portal: --now must be like 2026-12-01T09:00:00Z, not {args.now!r}", file=sys.stderr)
        return 2
    now = now if now.tzinfo else now.replace(tzinfo=UTC)

    async def run() -> dict[str, int]:
        services = Services.build(settings, make_environment(settings))
        await services.db.open()
        try:
            return await run_once(services, now)
        finally:
            close = getattr(services.payments.gateway, "close", None)
            if close is not None:
                await close()
            await services.db.close()

    counts = asyncio.run(run())
    print(summary(counts, now))
    return 1 if counts.get("unavailable") else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="portal", description="Water utility customer portal")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.set_defaults(func=cmd_serve)

    database = sub.add_parser("db", help="database maintenance")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)
    backup = db_sub.add_parser("backup", help="copy the database to FILE while the portal runs")
    backup.add_argument("file")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(func=cmd_db_backup)

    sub.add_parser("demo", help="load demo accounts, bills and usage").set_defaults(func=cmd_demo)

    imp = sub.add_parser("import", help="import a CSV file from the billing system")
    imp.add_argument("kind", choices=["accounts", "bills", "usage"])
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import)

    export = sub.add_parser("export", help="export data for the billing system")
    export.add_argument("what", choices=["payments"])
    export.add_argument("--date", help="the batch's day, YYYY-MM-DD (default: today)")
    export.add_argument("--output", help="write to this file instead of standard output")
    export.add_argument("--format", choices=["csv"], default="csv", help="csv (the only one)")
    export.set_defaults(func=cmd_export)

    pay = sub.add_parser("payments", help="payments with the processor")
    pay_sub = pay.add_subparsers(dest="payments_command", required=True)
    rec = pay_sub.add_parser("reconcile", help="ask the processor about pending payments")
    rec.add_argument(
        "--minutes", type=int, default=15, help="only payments pending this long (default 15)"
    )
    rec.set_defaults(func=cmd_payments_reconcile)

    jobs = sub.add_parser("jobs", help="time-driven work: AutoPay, reminders, clean-up")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    run = jobs_sub.add_parser("run", help="do all due work once and print a summary")
    run.add_argument("--now", help="pretend it is this moment (ISO-8601, UTC if no offset)")
    run.set_defaults(func=cmd_jobs_run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
