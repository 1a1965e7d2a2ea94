"""The money trail after a payment: processor events, reversals and reconciliation.

    handle_event(service, event)   a verified processor event: recorded once in
                                   gateway_events (its id is the key), appended to the
                                   payment's payment_events once, then acted on
    record_reversal(...)           money taken back (a bank payment that failed after
                                   processing, a refund, a dispute): a payment_reversals
                                   row (exported as a negative row), an event, an email
    reconcile(service, minutes)    ask the processor about every payment still pending
                                   or processing after `minutes`, and settle it

Events are triggers, not the truth: for a payment that is not final yet the processor
is asked how it stands (GatewayResult), so events arriving twice, late or out of order
all end in the same state.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from portal.db import utcnow
from portal.payments.gateway import GatewayEvent, GatewayUnavailable, Reversal

if TYPE_CHECKING:
    from portal.payments.service import PaymentsService

log = logging.getLogger("portal.payments")


async def record_reversal(
    service: PaymentsService, conn, payment: Any, reversal: Reversal, event_id: str | None
) -> bool:
    """Record money taken back from an accepted payment, once (by reversal.ref)."""
    if payment["status"] != "succeeded":
        return False
    cursor = await conn.execute(
        "SELECT kind, amount_cents FROM payment_reversals WHERE payment_id = ?", (payment["id"],)
    )
    earlier = await cursor.fetchall()
    amount = reversal.amount_cents
    if reversal.cumulative:  # Stripe tells the total refunded so far on the charge
        amount -= sum(row["amount_cents"] for row in earlier if row["kind"] == reversal.kind)
    amount = min(amount, payment["amount_cents"] - sum(row["amount_cents"] for row in earlier))
    if amount <= 0:
        return False
    cursor = await conn.execute(
        "INSERT INTO payment_reversals (payment_id, kind, amount_cents, reason_code, gateway_ref, at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gateway_ref) DO NOTHING",
        (payment["id"], reversal.kind, amount, reversal.reason_code[:100], reversal.ref, utcnow()),
    )
    if cursor.rowcount != 1:
        return False
    await service._event(
        conn,
        payment["id"],
        "reversed",
        f"{reversal.kind} {reversal.reason_code[:100]} {amount}",
        event_id,
    )
    await _email_reversal(service, conn, payment, reversal.kind, amount)
    log.info("payment %s: %s of %s cents", payment["id"], reversal.kind, amount)
    return True


async def _email_reversal(service: PaymentsService, conn, payment: Any, kind: str, amount: int):
    """Tell the payer, in the language they paid in: the receipt address, or else the
    signed-in resident's address. A guest who gave no address gets no email."""
    cursor = await conn.execute(
        "SELECT sa.account_number, sa.service_address, u.email, u.locale"
        " FROM service_accounts sa LEFT JOIN users u ON u.id = ?  WHERE sa.id = ?",
        (payment["user_id"], payment["account_id"]),
    )
    row = await cursor.fetchone()
    to = payment["receipt_email"] or row["email"]
    if not to:
        return
    from portal.payments.service import mask_address

    await service.mailer.enqueue(
        conn,
        to=to,
        template="payment_reversed",
        context={
            "kind": kind,
            "amount_cents": amount,
            "payment": dict(payment),
            "account_ending": row["account_number"][-4:],
            "service_addresses": [mask_address(row["service_address"])],
            "link": f"{service.settings.base_url}/pay/receipt/{payment['receipt_token']}",
        },
        locale=payment["locale"] or row["locale"] or "en",
    )


async def _find_payment(service: PaymentsService, event: GatewayEvent) -> Any:
    db = service.db
    if event.checkout_ref:
        found = await db.fetchone(
            "SELECT * FROM payments WHERE gateway_ref = ?", (event.checkout_ref,)
        )
        if found is not None:
            return found
    if event.intent:
        found = await db.fetchone(
            "SELECT * FROM payments WHERE gateway_intent = ?", (event.intent,)
        )
        if found is not None:
            return found
    reference = event.reference
    if reference is None and event.intent and hasattr(service.gateway, "reference_for_intent"):
        # A refund or dispute told before the payment's own events: ask the processor.
        reference = await service.gateway.reference_for_intent(event.intent)
    match = re.fullmatch(r"payment-([0-9]{1,18})", reference or "")
    if match is None:
        return None
    found = await db.fetchone("SELECT * FROM payments WHERE id = ?", (int(match.group(1)),))
    # The reference must agree with what the portal knows of the payment.
    if found is None or found["gateway"] != service.gateway.name:
        return None
    if event.checkout_ref and found["gateway_ref"] not in (None, event.checkout_ref):
        return None
    return found


def _open(payment: Any) -> bool:
    return payment["status"] == "pending" or bool(payment["processing"])


async def handle_event(service: PaymentsService, event: GatewayEvent) -> str:
    """Act on a verified event once. Returns what was done (also kept in gateway_events).
    Raises GatewayUnavailable when the processor cannot be asked: the event is then not
    recorded, and the processor delivers it again later."""
    db = service.db
    if await db.fetchval("SELECT 1 FROM gateway_events WHERE id = ?", (event.id,)):
        return "duplicate"
    payment = await _find_payment(service, event)
    result = None
    if payment is not None and _open(payment):
        ref = payment["gateway_ref"] or event.checkout_ref
        if ref:
            result = await service.gateway.retrieve(ref)
    async with db.write() as conn:
        cursor = await conn.execute(
            "INSERT INTO gateway_events (id, type, payment_id, received_at, outcome)"
            " VALUES (?, ?, ?, ?, '') ON CONFLICT (id) DO NOTHING",
            (event.id, event.type[:100], payment["id"] if payment else None, utcnow()),
        )
        if cursor.rowcount != 1:
            return "duplicate"
        if payment is None:
            outcome = "ignored: unknown payment"
        else:
            changed = False
            event_id: str | None = event.id
            if result is not None:
                if payment["gateway_ref"] is None:  # the session was made but not noted
                    await conn.execute(
                        "UPDATE payments SET gateway_ref = ? WHERE id = ? AND gateway_ref IS NULL",
                        (result.ref, payment["id"]),
                    )
                payment, changed = await service.settle_in(
                    conn, result, f"event {event.type}", event_id
                )
                event_id = None if changed else event_id
            if event.reversal is not None:
                cursor = await conn.execute("SELECT * FROM payments WHERE id = ?", (payment["id"],))
                payment = await cursor.fetchone()
                if await record_reversal(service, conn, payment, event.reversal, event_id):
                    changed, event_id = True, None
            if event_id is not None:  # nothing changed: the event is still on the record
                detail = f"event {event.type}" + (
                    f" ({event.failure_code})" if event.failure_code else ""
                )
                await service._event(conn, payment["id"], payment["status"], detail, event_id)
            outcome = "applied" if changed else "no change"
        await conn.execute(
            "UPDATE gateway_events SET outcome = ? WHERE id = ?", (outcome, event.id)
        )
    log.info("gateway event %s %s: %s", event.id, event.type, outcome)
    return outcome


async def reconcile(
    service: PaymentsService, minutes: int, now: datetime | None = None
) -> dict[str, int]:
    """Ask the processor about payments pending (or processing) for more than `minutes`
    and settle them. Returns counts: checked, changed, unavailable."""
    cutoff = (now or datetime.now(UTC)) - timedelta(minutes=minutes)
    stamp = cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = await service.db.fetchall(
        "SELECT id, gateway_ref, status FROM payments WHERE gateway = ? AND gateway_ref IS NOT NULL"
        " AND ((status = 'pending' AND created_at < ?) OR (processing = 1 AND settled_at < ?))"
        " ORDER BY id",
        (service.gateway.name, stamp, stamp),
    )
    counts = {"checked": 0, "changed": 0, "unavailable": 0}
    for row in rows:
        counts["checked"] += 1
        try:
            result = await service.gateway.retrieve(row["gateway_ref"])
        except GatewayUnavailable:
            counts["unavailable"] += 1
            continue
        if result is None:
            continue
        async with service.db.write() as conn:
            _payment, changed = await service.settle_in(conn, result, "reconcile")
        counts["changed"] += changed
    if rows:
        log.info("reconcile: %s", counts)
    return counts
