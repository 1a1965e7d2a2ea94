"""Saved payment methods (My Profile → Payment methods).

A method is added through the gateway's own page in save mode; the portal keeps the
gateway's token, type, brand, last four, expiry and a nickname. A method that AutoPay
or a scheduled payment uses cannot be removed until the resident picks another.
"""

from __future__ import annotations

from typing import Any

from portal.accounts import audit
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _
from portal.payments.gateway import Gateway, GatewayUnavailable
from portal.settings import Settings

NICKNAME_MAX = 40
METHODS = ("card", "bank")


class AddMethodForm(Form):
    fields = ("method", "nickname", "idempotency_key")


class NicknameForm(Form):
    fields = ("nickname",)


def nickname_problem(nickname: str) -> str | None:
    if len(nickname) > NICKNAME_MAX:
        return _("Use a nickname of %(max)s characters or fewer", max=NICKNAME_MAX)
    if any(not ch.isprintable() for ch in nickname):
        return _("Use letters, numbers and spaces in the nickname")
    return None


def chosen_method(form: Form, methods: list[Any]) -> Any:
    """The saved method a form's method_id names among the resident's own, or None with
    the form's error set (another resident's id is simply not among them)."""
    method = next((m for m in methods if str(m["id"]) == form.method_id), None)
    if method is None:
        form.errors["method_id"] = _("Choose the saved payment method to charge")
    return method


class MethodsService:
    def __init__(self, db: Database, settings: Settings, gateway: Gateway) -> None:
        self.db = db
        self.settings = settings
        self.gateway = gateway

    async def list(self, user_id: int) -> list[Any]:
        return await self.db.fetchall(
            "SELECT * FROM saved_methods WHERE user_id = ? AND removed_at IS NULL"
            " ORDER BY is_default DESC, id",
            (user_id,),
            bounded=True,
        )

    async def get(self, user_id: int, method_id: int) -> Any:
        return await self.db.fetchone(
            "SELECT * FROM saved_methods WHERE id = ? AND user_id = ? AND removed_at IS NULL",
            (method_id, user_id),
        )

    async def start(self, user: Any, form: AddMethodForm, client: str) -> Result:
        """The gateway's page in save mode: outcome 'ok' with its URL, 'invalid' or
        'unavailable' (nothing saved; the same form may be sent again)."""
        if form.method not in METHODS:
            form.errors["method"] = _("Choose what to save: a card or a bank account")
        problem = nickname_problem(form.nickname)
        if problem:
            form.errors["nickname"] = problem
        if not 20 <= len(form.idempotency_key) <= 64:
            form.errors["form"] = _("This form had expired. Check the details and continue again")
        if form.errors:
            return Result.invalid(form.errors)
        existing = await self.db.fetchone(
            "SELECT ref FROM method_setups WHERE idempotency_key = ? AND user_id = ?",
            (form.idempotency_key, user.user_id),
        )
        if existing is not None:
            return Result(value=self.gateway.checkout_url(existing["ref"]))
        customer = await self.db.fetchval(
            "SELECT customer FROM saved_methods WHERE user_id = ? AND gateway = ? AND customer != ''"
            " ORDER BY id LIMIT 1",
            (user.user_id, self.gateway.name),
        )
        try:
            setup = await self.gateway.create_setup_checkout(
                idempotency_key=f"setup-{form.idempotency_key}",
                email=user.email,
                reference=f"user-{user.user_id}",
                method=form.method,
                return_url=f"{self.settings.base_url}/profile/payment-methods/return",
                customer=customer,
            )
        except GatewayUnavailable:
            return Result("unavailable")
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO method_setups (ref, user_id, idempotency_key, customer, nickname,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    setup.ref,
                    user.user_id,
                    form.idempotency_key,
                    setup.customer,
                    form.nickname,
                    utcnow(),
                ),
            )
            await audit.record(conn, "method_setup_started", username=user.username, client=client)
        return Result(value=setup.url)

    async def finish(self, user: Any, ref: str, client: str) -> Result:
        """Back from the gateway's page: keep the method it saved (once). Outcome 'ok'
        (value: the method), 'not_saved' (canceled on the page) or 'missing'."""
        if not ref or len(ref) > 255:
            return Result("missing")
        setup = await self.db.fetchone(
            "SELECT * FROM method_setups WHERE ref = ? AND user_id = ?", (ref, user.user_id)
        )
        if setup is None:
            return Result("missing")
        saved = await self.gateway.retrieve_saved_method(ref)  # GatewayUnavailable: caller
        if saved is None:
            return Result("not_saved")
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM saved_methods WHERE user_id = ? AND removed_at IS NULL",
                (user.user_id,),
            )
            first = (await cursor.fetchone())[0] == 0
            cursor = await conn.execute(
                "INSERT INTO saved_methods (user_id, gateway, customer, token, method, brand,"
                " last4, exp_month, exp_year, nickname, is_default, setup_ref, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    user.user_id,
                    self.gateway.name,
                    saved.customer,
                    saved.token,
                    saved.method,
                    saved.brand,
                    saved.last4,
                    saved.exp_month,
                    saved.exp_year,
                    setup["nickname"],
                    int(first),
                    ref,
                    utcnow(),
                ),
            )
            if cursor.rowcount == 1:
                await audit.record(
                    conn,
                    "method_saved",
                    username=user.username,
                    client=client,
                    detail=f"{saved.method} ending {saved.last4}",
                )
            cursor = await conn.execute("SELECT * FROM saved_methods WHERE setup_ref = ?", (ref,))
            method = await cursor.fetchone()
        return Result(value=method)

    async def rename(self, user: Any, method_id: int, form: NicknameForm, client: str) -> Result:
        method = await self.get(user.user_id, method_id)
        if method is None:
            return Result("missing")
        problem = nickname_problem(form.nickname)
        if problem:
            return Result.invalid({f"nickname-{method_id}": problem})
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE saved_methods SET nickname = ? WHERE id = ?", (form.nickname, method_id)
            )
            await audit.record(conn, "method_renamed", username=user.username, client=client)
        return Result()

    async def make_default(self, user: Any, method_id: int, client: str) -> Result:
        method = await self.get(user.user_id, method_id)
        if method is None:
            return Result("missing")
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE saved_methods SET is_default = (id = ?) WHERE user_id = ?",
                (method_id, user.user_id),
            )
            await audit.record(conn, "method_default", username=user.username, client=client)
        return Result()

    async def uses(self, method_id: int) -> dict[str, int]:
        """How many AutoPay enrolments and pending scheduled payments use a method."""
        autopay = await self.db.fetchval(
            "SELECT count(*) FROM autopay WHERE method_id = ?", (method_id,)
        )
        scheduled = await self.db.fetchval(
            "SELECT count(*) FROM schedules WHERE method_id = ? AND kind = 'scheduled'"
            " AND status IN ('scheduled', 'charging')",
            (method_id,),
        )
        return {"autopay": autopay, "scheduled": scheduled}

    async def remove(self, user: Any, method_id: int, client: str) -> Result:
        """Outcome 'ok', 'missing' or 'in_use' (value: the uses, for the reason)."""
        method = await self.get(user.user_id, method_id)
        if method is None:
            return Result("missing")
        async with self.db.write() as conn:
            # Checked inside the write transaction: an enrolment cannot slip in between.
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM autopay WHERE method_id = :id),"
                " (SELECT count(*) FROM schedules WHERE method_id = :id AND kind = 'scheduled'"
                "  AND status IN ('scheduled', 'charging'))",
                {"id": method_id},
            )
            autopay, scheduled = await cursor.fetchone()
            if autopay or scheduled:
                return Result("in_use", value={"autopay": autopay, "scheduled": scheduled})
            await conn.execute(
                "UPDATE saved_methods SET removed_at = ?, is_default = 0 WHERE id = ?",
                (utcnow(), method_id),
            )
            await conn.execute(
                "UPDATE saved_methods SET is_default = 1 WHERE id = (SELECT id FROM saved_methods"
                " WHERE user_id = ? AND removed_at IS NULL ORDER BY id LIMIT 1)"
                " AND NOT EXISTS (SELECT 1 FROM saved_methods WHERE user_id = ?"
                " AND removed_at IS NULL AND is_default = 1)",
                (user.user_id, user.user_id),
            )
            await audit.record(
                conn,
                "method_removed",
                username=user.username,
                client=client,
                detail=f"{method['method']} ending {method['last4']}",
            )
        return Result()
