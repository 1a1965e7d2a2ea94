"""The supervisors' view of staff actions: filters (who, what, when, which account) and
the same rows as CSV. Dates are the utility's local days; the database keeps UTC."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from portal.billing.numbers import number_key
from portal.db import Database
from portal.forms import Form, Result
from portal.i18n import _
from portal.settings import Settings

ACTIONS = (
    "resend_verification",
    "unlock",
    "change_email",
    "release_account",
    "note",
    "phone_payment",
    "cancel_autopay",
    "cancel_scheduled_payment",
    "site_notice",
    "site_notice_removed",
)
PAGE_LIMIT = 200
# The CSV's columns: its header, and the row's field.
CSV_COLUMNS = (
    ("at_utc", "at"),
    ("staff", "staff_username"),
    ("action", "action"),
    ("customer_number", "customer_number"),
    ("account_number", "account_number"),
    ("login", "login"),
    ("reason", "reason"),
    ("detail", "detail"),
)
CSV_LIMIT = 100_000


class AuditFilterForm(Form):
    fields = ("staff", "action", "date_from", "date_to", "account")

    @classmethod
    def from_query(cls, params: Any) -> AuditFilterForm:
        return cls({name: str(params.get(name, ""))[:100] for name in cls.fields})


class OversightService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.zone = ZoneInfo(settings.timezone)

    def _utc(self, day: date) -> str:
        moment = datetime.combine(day, time(), tzinfo=self.zone).astimezone(ZoneInfo("UTC"))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _where(self, form: AuditFilterForm) -> tuple[str, list[Any]] | None:
        clauses, params = [], []
        if form.staff:
            clauses.append("a.staff_username = ? COLLATE NOCASE")
            params.append(form.staff)
        if form.action:
            if form.action not in ACTIONS:
                form.errors["action"] = _("Choose an action from the list")
            clauses.append("a.action = ?")
            params.append(form.action)
        for name, after in (("date_from", True), ("date_to", False)):
            raw = getattr(form, name)
            if not raw:
                continue
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                form.errors[name] = _("Enter a date like 2026-11-30")
                continue
            if after:
                clauses.append("a.at >= ?")
                params.append(self._utc(day))
            else:
                clauses.append("a.at < ?")
                params.append(self._utc(day + timedelta(days=1)))
        if form.account:
            key = number_key(form.account)
            if key is None:
                form.errors["account"] = _("Enter a customer or account number")
            clauses.append(
                "a.account_id IN (SELECT id FROM service_accounts WHERE customer_key = ? OR account_key = ?)"
            )
            params += [key, key]
        if form.errors:
            return None
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    async def actions(self, form: AuditFilterForm, limit: int = PAGE_LIMIT) -> Result:
        """Value: the matching staff actions, newest first, with each account's numbers."""
        where = self._where(form)
        if where is None:
            return Result.invalid(form.errors)
        sql, params = where
        rows = await self.db.fetchall(
            "SELECT a.id, a.at, a.staff_username, a.action, a.account_id, a.user_id, a.reason,"
            " a.detail, sa.customer_number, sa.account_number, u.username AS login"
            " FROM staff_actions a LEFT JOIN service_accounts sa ON sa.id = a.account_id"
            f" LEFT JOIN users u ON u.id = a.user_id{sql} ORDER BY a.id DESC LIMIT ?",
            (*params, limit),
        )
        return Result(value=rows)

    async def actions_csv(self, form: AuditFilterForm) -> Result:
        result = await self.actions(form, limit=CSV_LIMIT)
        if not result.ok:
            return result
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header for header, _key in CSV_COLUMNS)
        for row in result.value:
            writer.writerow(_cell(row[key]) for _header, key in CSV_COLUMNS)
        return Result(value=out.getvalue())


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a reason typed as =HYPERLINK…)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
