"""What a representative can see and do for a resident.

Read-only views (search, an account with its login, bills, usage, payments and their
events, notes, the resident's sign-ins and audit trail) and the actions, each with a
required reason, written to staff_actions and to the audit log under the staff member's
name in the same transaction as the change. Never: a password, a card number, signing
in as the resident, or a change to billing data (that is the billing system's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from typing import Any

import aiosqlite

from portal.accounts import audit
from portal.accounts.links import EMAIL_CHANGE, VERIFY, Link, issue_link
from portal.accounts.signin import ACCOUNT_FAILURES_MAX, CODE_FAILURES_MAX, forget_failures
from portal.accounts.two_step import turn_off_in
from portal.accounts.validation import confirm_email_problem, email_problem, normalize_email
from portal.autopay.scheduled import ScheduledService
from portal.autopay.service import AutoPayService
from portal.billing.numbers import number_key
from portal.billing.service import BillingService, amount_due
from portal.db import Database, is_row_id, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.pages import notice
from portal.pages.notice import notice_problem
from portal.payments.service import PaymentForm, PaymentsService
from portal.settings import Settings
from portal.staff import search_index
from portal.staff.accounts import audit_name
from portal.staff.sessions import StaffMember

SEARCH_LIMIT = 50
REASON_MAX = 500
NOTE_MAX = 2000


class ReasonForm(Form):
    fields = ("reason",)


class StaffEmailForm(Form):
    fields = ("new_email", "confirm_new_email", "reason")


class NoteForm(Form):
    fields = ("text",)


class NoticeForm(Form):
    fields = ("text_en", "text_es", "reason")


class NoticeClearForm(Form):
    fields = ("clear_reason",)  # its own name: the page holds both forms


class StaffPaymentForm(PaymentForm):
    fields = (*PaymentForm.fields, "reason")


def reason_problem(reason: str) -> str | None:
    if not reason:
        return _("Enter the reason for this action, as you would explain it to a supervisor")
    if len(reason) > REASON_MAX:
        return _("Keep the reason to %(max)s characters or fewer", max=REASON_MAX)
    return None


def fts_phrase(text: str) -> str:
    """Text as one FTS5 phrase: with the trigram index, a case-insensitive substring."""
    return '"' + text.replace('"', '""') + '"'


# The resident's audit event for each link a representative sends them.
SENT_BY_STAFF = {
    VERIFY: "verification_resent_by_staff",
    EMAIL_CHANGE: "email_change_requested_by_staff",
}


def _login_action(act):
    """A representative's action on a login, with a reason: called with the user id, it
    answers 'missing' for no such login, 'invalid' without a reason, else acts on the
    login's row."""

    @wraps(act)
    async def checked(self, staff: StaffMember, user_id: int, form: ReasonForm, client: str):
        login = await self._login(user_id)
        if login is None:
            return Result("missing")
        problem = reason_problem(form.reason)
        if problem:
            return Result.invalid({"reason": problem})
        return await act(self, staff, login, form, client)

    return checked


@dataclass
class LoginView:
    login: Any
    accounts: list[Any]
    sign_ins: list[Any]
    trail: list[Any]


@dataclass
class ConsoleService:
    db: Database
    settings: Settings
    mailer: Any
    billing: BillingService
    payments: PaymentsService
    autopay: AutoPayService
    scheduled: ScheduledService

    # --- search ------------------------------------------------------------------------

    async def search(self, query: str) -> tuple[list[Any], list[Any]]:
        """Accounts (with their login, if any) and logins that have no account, matching
        a customer or account number, name, service address, username or email: whole
        numbers as the bill prints them (dashes, spaces, leading zeros ignored), or any
        part of three characters or more, without regard to case."""
        query = query.strip()[:100]
        if not query:
            return [], []
        await search_index.refresh(self.db)
        account_ids: set[int] = set()
        user_ids: set[int] = set()
        key = number_key(query)
        if key:
            rows = await self.db.fetchall(
                "SELECT id FROM service_accounts WHERE customer_key = ? OR account_key = ? LIMIT ?",
                (key, key, SEARCH_LIMIT),
            )
            account_ids.update(r["id"] for r in rows)
        rows = await self.db.fetchall(
            "SELECT id FROM users WHERE username_key = ? OR email_key = ?",
            (query.casefold(), query.casefold()),
        )
        user_ids.update(r["id"] for r in rows)
        if len(query) >= 3:
            phrase = fts_phrase(query)
            rows = await self.db.fetchall(
                "SELECT rowid FROM account_search WHERE account_search MATCH ? LIMIT ?",
                (phrase, SEARCH_LIMIT),
            )
            account_ids.update(r["rowid"] for r in rows)
            rows = await self.db.fetchall(
                "SELECT rowid FROM login_search WHERE login_search MATCH ? LIMIT ?",
                (phrase, SEARCH_LIMIT),
            )
            user_ids.update(r["rowid"] for r in rows)
        if user_ids:
            marks = ",".join("?" * len(user_ids))
            rows = await self.db.fetchall(
                f"SELECT account_id FROM user_accounts WHERE user_id IN ({marks})", tuple(user_ids)
            )
            account_ids.update(r["account_id"] for r in rows)
        accounts: list[Any] = []
        if account_ids:
            marks = ",".join("?" * len(account_ids))
            accounts = await self.db.fetchall(
                "SELECT sa.id, sa.customer_number, sa.account_number, sa.name, sa.service_address,"
                " sa.status, u.id AS user_id, u.username, u.email"
                " FROM service_accounts sa LEFT JOIN user_accounts ua ON ua.account_id = sa.id"
                " LEFT JOIN users u ON u.id = ua.user_id"
                f" WHERE sa.id IN ({marks}) ORDER BY sa.name, sa.service_address, sa.id LIMIT ?",
                (*account_ids, SEARCH_LIMIT),
            )
        logins: list[Any] = []
        if user_ids:
            marks = ",".join("?" * len(user_ids))
            logins = await self.db.fetchall(
                "SELECT id, username, email FROM users u"
                f" WHERE id IN ({marks}) AND NOT EXISTS"
                " (SELECT 1 FROM user_accounts ua WHERE ua.user_id = u.id)"
                " ORDER BY username_key LIMIT ?",
                (*user_ids, SEARCH_LIMIT),
            )
        return accounts, logins

    # --- read-only views -----------------------------------------------------------------

    async def account(self, account_id: int) -> Any:
        if not is_row_id(account_id):
            return None
        return await self.db.fetchone("SELECT * FROM service_accounts WHERE id = ?", (account_id,))

    async def active_account(self, account_id: int) -> Any:
        """An account a payment can be taken for (the same rule as Pay My Bill's)."""
        return await self.payments.account(account_id) if is_row_id(account_id) else None

    async def account_view(self, account_id: int) -> dict[str, Any] | None:
        account = await self.account(account_id)
        if account is None:
            return None
        user_id = await self.db.fetchval(
            "SELECT user_id FROM user_accounts WHERE account_id = ?", (account_id,)
        )
        payments = await self.db.fetchall(
            "SELECT p.id, p.created_at, p.settled_at, p.amount_cents, p.status, p.method, p.brand,"
            " p.last4, p.confirmation_number, p.user_id, st.username AS taken_by"
            " FROM payments p LEFT JOIN staff st ON st.id = p.taken_by_staff_id"
            " WHERE p.account_id = ? ORDER BY p.created_at DESC LIMIT 50",
            (account_id,),
        )
        events: dict[int, list[Any]] = {p["id"]: [] for p in payments}
        if payments:
            marks = ",".join("?" * len(payments))
            for event in await self.db.fetchall(
                "SELECT payment_id, status, at, detail FROM payment_events"
                f" WHERE payment_id IN ({marks}) ORDER BY id",
                tuple(events),
            ):
                events[event["payment_id"]].append(event)
        return {
            "account": account,
            "amount_due": await amount_due(self.db, account_id),
            "bills": await self.billing.bills(account_id),
            "months": await self.billing.usage(account_id),
            "payments": payments,
            "events": events,
            "notes": await self.db.fetchall(
                "SELECT n.at, n.body, st.username FROM account_notes n"
                " JOIN staff st ON st.id = n.staff_id WHERE n.account_id = ? ORDER BY n.id DESC",
                (account_id,),
            ),
            "actions": await self.db.fetchall(
                "SELECT at, staff_username, action, reason, detail FROM staff_actions"
                " WHERE account_id = ? ORDER BY id DESC LIMIT 50",
                (account_id,),
            ),
            # The login's saved methods as a receipt names them: never the processor's token.
            "methods": await self.db.fetchall(
                "SELECT id, method, brand, last4, exp_month, exp_year, nickname, is_default"
                " FROM saved_methods WHERE user_id = ? AND removed_at IS NULL"
                " ORDER BY is_default DESC, id",
                (user_id,),
            ),
            "autopay": await self.autopay.status(account_id),
            "scheduled": await self.scheduled.list(account_id),
            "login": await self.login_view(user_id) if user_id else None,
        }

    async def schedule(self, account_id: int, schedule_id: int) -> Any:
        """One of this account's scheduled one-time payments (None for another's)."""
        if not is_row_id(schedule_id):
            return None
        return await self.db.fetchone(
            "SELECT id FROM schedules WHERE id = ? AND account_id = ? AND kind = 'scheduled'",
            (schedule_id, account_id),
        )

    async def login_view(self, user_id: int) -> LoginView | None:
        if not is_row_id(user_id):
            return None
        login = await self.db.fetchone(
            "SELECT id, username, email, created_at, verified_at, failed_logins,"
            " paperless, printed, locale, two_step_at, code_failures FROM users WHERE id = ?",
            (user_id,),
        )
        if login is None:
            return None
        accounts = await self.db.fetchall(
            "SELECT sa.id, sa.customer_number, sa.account_number, sa.service_address, sa.status"
            " FROM user_accounts ua JOIN service_accounts sa ON sa.id = ua.account_id"
            " WHERE ua.user_id = ? ORDER BY sa.service_address",
            (user_id,),
        )
        sign_ins = await self.db.fetchall(
            "SELECT at, event, client FROM audit_log WHERE username = ?"
            " AND event IN ('sign_in', 'sign_in_failed', 'sign_in_locked', 'sign_in_throttled',"
            " 'sign_in_unverified', 'lockout', 'sign_in_password_ok', 'sign_in_code_failed',"
            " 'sign_in_code_locked', 'recovery_code_used')"
            " ORDER BY at DESC LIMIT 10",
            (login["username"],),
        )
        trail = await self.db.fetchall(
            "SELECT at, event, client, detail FROM audit_log WHERE username = ?"
            " ORDER BY at DESC LIMIT 50",
            (login["username"],),
        )
        return LoginView(login, accounts, sign_ins, trail)

    def locked(self, login: Any) -> bool:
        """Locked until a password reset (or a representative's unlock): too many wrong
        passwords, or too many wrong two-step codes, in a row."""
        return (
            login["failed_logins"] >= ACCOUNT_FAILURES_MAX
            or login["code_failures"] >= CODE_FAILURES_MAX
        )

    # --- actions ---------------------------------------------------------------------------

    async def post_notice(self, staff: StaffMember, form: NoticeForm, client: str) -> Result:
        """A supervisor's service notice on every page (pages/notice.py): 'ok' or
        'invalid'. A staff action with its reason; the texts go in its detail."""
        errors = {
            name: problem
            for name, problem in (
                ("text_en", notice_problem(form.text_en, spanish=False)),
                ("text_es", notice_problem(form.text_es, spanish=True)),
                ("reason", reason_problem(form.reason)),
            )
            if problem
        }
        if errors:
            return Result.invalid(errors)
        async with self.db.write() as conn:
            await conn.execute(notice.UPSERT, (form.text_en, form.text_es, utcnow()))
            detail = f"en={form.text_en} | es={form.text_es}"
            await self._record(conn, staff, client, "site_notice", form.reason, detail=detail)
        return Result()

    async def remove_notice(self, staff: StaffMember, form: NoticeClearForm, client: str) -> Result:
        """Take the notice down: 'ok', 'invalid' (no reason) or 'missing' (none shown)."""
        problem = reason_problem(form.clear_reason)
        if problem:
            return Result.invalid({"clear_reason": problem})
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM site_notice WHERE id = 1")
            if not cursor.rowcount:
                return Result("missing")
            await self._record(conn, staff, client, "site_notice_removed", form.clear_reason)
        return Result()

    async def _record(
        self,
        conn: aiosqlite.Connection,
        staff: StaffMember,
        client: str,
        action: str,
        reason: str,
        *,
        account_id: int | None = None,
        user_id: int | None = None,
        detail: str | None = None,
        resident: tuple[str, str, str | None] | None = None,
    ) -> None:
        """The staff action, its audit row under the staff member's name and, with
        `resident` (event, username, detail), the row the resident's own trail shows."""
        if resident:
            event, username, resident_detail = resident
            await audit.record(
                conn, event, username=username, client=client, detail=resident_detail
            )
        await conn.execute(
            "INSERT INTO staff_actions (at, staff_id, staff_username, action, account_id, user_id,"
            " reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (utcnow(), staff.staff_id, staff.username, action, account_id, user_id, reason, detail),
        )
        where = " ".join(
            part
            for part in (
                f"account={account_id}" if account_id else "",
                f"login={user_id}" if user_id else "",
                detail or "",
            )
            if part
        )
        await audit.record(
            conn,
            f"staff_{action}",
            username=audit_name(staff.username),
            client=client,
            detail=where,
        )

    async def _login(self, user_id: int) -> Any:
        if not is_row_id(user_id):
            return None
        return await self.db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))

    async def _mail_link(
        self, conn: aiosqlite.Connection, login: Any, client: str, kind: Link, to: str
    ) -> None:
        """An emailed one-time link for the login, in the language the resident chose
        (it lives as long as the same link the resident asks for themselves)."""
        with _locale(login["locale"]):
            await issue_link(
                conn,
                self.mailer,
                self.settings,
                kind,
                user_id=login["id"],
                username=login["username"],
                to=to,
                audit_event=SENT_BY_STAFF[kind],
                client=client,
            )

    @_login_action
    async def resend_verification(
        self, staff: StaffMember, login: Any, form: ReasonForm, client: str
    ) -> Result:
        if login["verified_at"]:
            return Result.invalid({"reason": _("This login is already verified")})
        async with self.db.write() as conn:
            await self._mail_link(conn, login, client, VERIFY, login["email"])
            await self._record(
                conn, staff, client, "resend_verification", form.reason, user_id=login["id"]
            )
        return Result()

    @_login_action
    async def unlock(self, staff: StaffMember, login: Any, form: ReasonForm, client: str) -> Result:
        async with self.db.write() as conn:
            # The same release as a password reset: the failures against the name end.
            await forget_failures(conn, login["id"], login["username_key"])
            await self._record(
                conn,
                staff,
                client,
                "unlock",
                form.reason,
                user_id=login["id"],
                resident=("unlocked_by_staff", login["username"], None),
            )
        return Result()

    @_login_action
    async def two_step_off(
        self, staff: StaffMember, login: Any, form: ReasonForm, client: str
    ) -> Result:
        """For a resident who lost both the phone and the recovery codes. Supervisors
        only: whoever calls with a resident's password would otherwise need only to
        convince a representative. The resident is emailed."""
        if not staff.supervisor:
            return Result.invalid(
                {"reason": _("Only a supervisor can turn off two-step verification.")}
            )
        async with self.db.write() as conn:
            if not await turn_off_in(conn, login["id"]):
                return Result.invalid({"reason": _("Two-step verification is already off.")})
            await self.mailer.enqueue(
                conn,
                to=login["email"],
                template="two_step_changed",
                context={"username": login["username"], "turned_on": False, "by_staff": True},
                locale=login["locale"],
                accounts_of=[login["id"]],
            )
            await self._record(
                conn,
                staff,
                client,
                "two_step_off",
                form.reason,
                user_id=login["id"],
                resident=("two_step_off_by_staff", login["username"], None),
            )
        return Result()

    async def change_email(
        self, staff: StaffMember, user_id: int, form: StaffEmailForm, client: str
    ) -> Result:
        """Sends the confirmation link to the new address; the address changes only when
        the resident opens it (My Profile's own confirmation page)."""
        login = await self._login(user_id)
        if login is None:
            return Result("missing")
        errors = {}
        for name, problem in (
            ("new_email", email_problem(form.new_email)),
            ("confirm_new_email", confirm_email_problem(form.new_email, form.confirm_new_email)),
            ("reason", reason_problem(form.reason)),
        ):
            if problem:
                errors[name] = problem
        if errors:
            return Result.invalid(errors)
        address = normalize_email(form.new_email) or form.new_email
        async with self.db.write() as conn:
            await self._mail_link(conn, login, client, EMAIL_CHANGE, address)
            await self._record(
                conn,
                staff,
                client,
                "change_email",
                form.reason,
                user_id=user_id,
                detail=f"to={audit.clean(address, 120)}",
            )
        return Result()

    async def release(
        self, staff: StaffMember, account_id: int, form: ReasonForm, client: str
    ) -> Result:
        """Take the account away from the login that has it (e.g. registered by someone
        who should not have it); the rightful resident can then register or link it."""
        problem = reason_problem(form.reason)
        if problem:
            return Result.invalid({"reason": problem})
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT ua.user_id, u.username FROM user_accounts ua JOIN users u ON u.id = ua.user_id"
                " WHERE ua.account_id = ?",
                (account_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                return Result("missing")
            await conn.execute("DELETE FROM user_accounts WHERE account_id = ?", (account_id,))
            await self._record(
                conn,
                staff,
                client,
                "release_account",
                form.reason,
                account_id=account_id,
                user_id=row["user_id"],
                resident=("account_released_by_staff", row["username"], f"account={account_id}"),
            )
        return Result()

    async def add_note(
        self, staff: StaffMember, account_id: int, form: NoteForm, client: str
    ) -> Result:
        if not form.text:
            return Result.invalid({"text": _("Enter the note")})
        if len(form.text) > NOTE_MAX:
            return Result.invalid(
                {"text": _("Keep the note to %(max)s characters or fewer", max=NOTE_MAX)}
            )
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO account_notes (account_id, staff_id, at, body) VALUES (?, ?, ?, ?)",
                (account_id, staff.staff_id, utcnow(), form.text),
            )
            await self._record(
                conn, staff, client, "note", form.text[:REASON_MAX], account_id=account_id
            )
        return Result()

    async def cancel_autopay(
        self, staff: StaffMember, account_id: int, form: ReasonForm, client: str
    ) -> Result:
        """Turn AutoPay off for the resident ('not_enrolled' when it was off): the same
        stop as their own, told to them by email."""
        problem = reason_problem(form.reason)
        if problem:
            return Result.invalid({"reason": problem})
        account = await self.account(account_id)
        async with self.db.write() as conn:
            enrolment = await self.autopay.stop_in(conn, account_id)
            if enrolment is None:
                return Result("not_enrolled")
            await self._canceled(
                conn, staff, client, form.reason, account, enrolment["user_id"], "autopay", {}
            )
        return Result()

    async def cancel_scheduled(
        self,
        staff: StaffMember,
        account_id: int,
        form: ReasonForm,
        client: str,
        *,
        schedule_id: int,
    ) -> Result:
        """Cancel a scheduled payment the runner has not started ('too_late' after): the
        same cancel as the resident's own, told to them by email."""
        problem = reason_problem(form.reason)
        if problem:
            return Result.invalid({"reason": problem})
        account = await self.account(account_id)
        async with self.db.write() as conn:
            row = await self.scheduled.cancel_in(conn, account_id, schedule_id)
            if row is None:
                return Result("too_late")
            await self._canceled(
                conn,
                staff,
                client,
                form.reason,
                account,
                row["user_id"],
                "scheduled",
                {"amount_cents": row["amount_cents"], "schedule": {"run_on": row["run_on"]}},
                schedule_id=schedule_id,
            )
        return Result()

    async def _canceled(
        self,
        conn: aiosqlite.Connection,
        staff: StaffMember,
        client: str,
        reason: str,
        account: Any,
        user_id: int,
        kind: str,
        context: dict,
        schedule_id: int | None = None,
    ) -> None:
        """After a cancel, in its transaction: the resident's audit row, the staff action
        and the email to the login that set the payment up."""
        cursor = await conn.execute(
            "SELECT username, email, locale FROM users WHERE id = ?", (user_id,)
        )
        login = await cursor.fetchone()
        what = "autopay" if kind == "autopay" else "scheduled_payment"
        on = f" schedule={schedule_id}" if schedule_id else ""
        await self._record(
            conn,
            staff,
            client,
            f"cancel_{what}",
            reason,
            account_id=account["id"],
            user_id=user_id,
            detail=on.strip() or None,
            resident=(
                f"{what}_canceled_by_staff",
                login["username"],
                f"account={account['account_number']}{on}",
            ),
        )
        context.update(
            username=login["username"],
            service_address=account["service_address"],
            kind=kind,
            link=f"{self.settings.base_url}/accounts/{account['id']}/{kind}",
        )
        await self.mailer.enqueue(
            conn,
            to=login["email"],
            template="canceled_by_staff",
            context=context,
            locale=login["locale"],
        )

    async def take_payment(
        self, staff: StaffMember, account_id: int, form: StaffPaymentForm, client: str
    ) -> Result:
        """A payment by phone: the same idempotent start as the resident's, marked with
        the representative; value is the gateway's hosted page, where the resident's
        card details are typed (the portal never sees them)."""
        problem = reason_problem(form.reason)
        self.payments.check_form(form)
        if problem:
            form.errors["reason"] = problem
        if form.errors:
            return Result.invalid(form.errors)
        form.errors.clear()
        result = await self.payments.start(account_id, None, form, taken_by_staff_id=staff.staff_id)
        if result.outcome == "checkout":
            payment_id = await self.db.fetchval(
                "SELECT id FROM payments WHERE idempotency_key = ?", (form.idempotency_key,)
            )
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "SELECT 1 FROM staff_actions WHERE action = 'phone_payment' AND detail = ?",
                    (f"payment={payment_id}",),
                )
                if await cursor.fetchone() is None:  # a resent form is one action
                    await self._record(
                        conn,
                        staff,
                        client,
                        "phone_payment",
                        form.reason,
                        account_id=account_id,
                        detail=f"payment={payment_id}",
                    )
        return result


class _locale:
    """Emails to a resident in the language they chose, whatever the staff member reads."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def __enter__(self) -> None:
        self.token = current_locale.set(self.locale)

    def __exit__(self, *exc: object) -> None:
        current_locale.reset(self.token)
