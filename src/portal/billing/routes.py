"""My Account over HTTP: dashboard, bills, usage, linking accounts.

URL map (all need a signed-in resident; another resident's account answers 404):
  GET  /account                                   dashboard of linked accounts
  GET  /account/link, POST                        Add another account
  POST /accounts/{account_id}/unlink              remove an account from this login
  GET  /accounts/{account_id}/bills               bill history
  GET  /accounts/{account_id}/bills/{bill_id}     one bill (printable)
  GET  /accounts/{account_id}/bills/{bill_id}/pdf the bill as a PDF
  GET  /accounts/{account_id}/usage               usage chart, table, leak notice
  GET  /accounts/{account_id}/usage.csv           usage history as CSV
"""

from __future__ import annotations

import csv
import io
from datetime import date

from babel.dates import format_date
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.accounts import audit
from portal.accounts.linking import link_account, unlink_account
from portal.accounts.routes import Accounts, signed_in
from portal.billing.chart import usage_chart_svg
from portal.billing.pdf import bill_pdf
from portal.billing.service import BillingService
from portal.i18n import _, format_locale
from portal.settings import Settings
from portal.web import client_address, form_data, render

Billing = NamedDependency[BillingService]
SiteSettings = NamedDependency[Settings]


async def _own_account(request: Request, billing: BillingService, account_id: int):
    """The resident's own account, or 404 (and an audit row) for anybody else's."""
    user = signed_in(request)
    account = await billing.linked_account(user.user_id, account_id)
    if account is None:
        async with billing.db.write() as conn:
            await audit.record(
                conn,
                "account_denied",
                username=user.username,
                client=client_address(request),
                detail=f"path={request.url.path}",
            )
        raise NotFoundException()
    return account


@get("/account")
async def dashboard(request: Request, billing: Billing, accounts: Accounts) -> Template:
    user = signed_in(request)
    summaries = await billing.dashboard(user.user_id)
    profile = await accounts.profile(user.user_id)
    notice = {
        "linked": _("The account was added to your login."),
        "unlinked": _("The account was removed from your login."),
    }.get(request.query_params.get("notice", ""))
    alert = {"kind": "success", "title": notice, "body": None} if notice else None
    return render(
        request,
        "pages/dashboard.html",
        summaries=summaries,
        profile=profile,
        alert=alert,
        today=billing.today(),
    )


@get("/account/link")
async def link_form(request: Request) -> Template:
    signed_in(request)
    return render(request, "pages/link_account.html", values={}, errors={})


@post("/account/link")
async def link(request: Request, accounts: Accounts) -> Template | Redirect:
    user = signed_in(request)
    data = await form_data(request)
    customer, account = (
        data.get("customer_number", "").strip(),
        data.get("account_number", "").strip(),
    )
    result = await link_account(accounts, user, customer, account, client_address(request))
    if not result.ok:
        return render(
            request,
            "pages/link_account.html",
            status_code=422,
            errors=result.errors,
            values={"customer_number": customer, "account_number": account},
        )
    return Redirect("/account?notice=linked", status_code=303)


@post("/accounts/{account_id:int}/unlink")
async def unlink(
    request: Request, account_id: FromPath[int], accounts: Accounts, billing: Billing
) -> Redirect:
    await _own_account(request, billing, account_id)
    await unlink_account(accounts, signed_in(request), account_id, client_address(request))
    return Redirect("/account?notice=unlinked", status_code=303)


@get("/accounts/{account_id:int}/bills")
async def bills(request: Request, account_id: FromPath[int], billing: Billing) -> Template:
    account = await _own_account(request, billing, account_id)
    return render(
        request,
        "pages/bills.html",
        account=account,
        bills=await billing.bills(account_id),
        payments=await billing.payments(account_id),
    )


@get("/accounts/{account_id:int}/bills/{bill_id:int}")
async def bill(
    request: Request, account_id: FromPath[int], bill_id: FromPath[int], billing: Billing
) -> Template:
    account = await _own_account(request, billing, account_id)
    found = await billing.bill(account_id, bill_id)
    if found is None:
        raise NotFoundException()
    return render(request, "pages/bill.html", account=account, bill=found)


@get("/accounts/{account_id:int}/bills/{bill_id:int}/pdf")
async def bill_download(
    request: Request,
    account_id: FromPath[int],
    bill_id: FromPath[int],
    billing: Billing,
    settings: SiteSettings,
) -> Response:
    account = await _own_account(request, billing, account_id)
    found = await billing.bill(account_id, bill_id)
    if found is None:
        raise NotFoundException()
    unit = await billing.unit(account_id)
    content = bill_pdf(
        dict(found),
        dict(account),
        settings.utility_name,
        settings.support_phone,
        labels={"consumption_unit": unit_name(unit)},
    )
    filename = f"bill-{found['bill_number']}.pdf".replace('"', "")
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        },
    )


def unit_name(unit: str) -> str:
    """The billing system's unit code in the resident's language."""
    return {"HCF": _("HCF"), "gallons": _("gallons")}.get(unit, unit)


def _month_label(read_date: str) -> str:
    return format_date(date.fromisoformat(read_date), format="MMM yyyy", locale=format_locale())


@get("/accounts/{account_id:int}/usage")
async def usage(request: Request, account_id: FromPath[int], billing: Billing) -> Template:
    account = await _own_account(request, billing, account_id)
    months = await billing.usage(account_id)
    leak = billing.possible_leak(months)
    unit = unit_name(months[-1].unit if months else "HCF")
    points = [
        {
            "label": _month_label(m.read_date),
            "month": m.month,
            "value": m.value,
            "flag": bool(leak) and m is months[-1],
        }
        for m in months
    ]
    chart = usage_chart_svg(
        points,
        unit=unit,
        title=_("Water use by month, in %(unit)s", unit=unit),
        desc=_(
            "Bar chart of the last %(count)s months. The same numbers are in the table below.",
            count=len(months),
        ),
    )
    labels = {m.read_date: _month_label(m.read_date) for m in months}
    return render(
        request,
        "pages/usage.html",
        account=account,
        months=months,
        leak=leak,
        chart=chart,
        unit=unit,
        labels=labels,
    )


@get("/accounts/{account_id:int}/usage.csv")
async def usage_csv(request: Request, account_id: FromPath[int], billing: Billing) -> Response:
    account = await _own_account(request, billing, account_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["account_number", "read_date", "consumption", "unit", "same_month_last_year"])
    for month in await billing.usage(account_id):
        writer.writerow(
            [
                account["account_number"],
                month.read_date,
                month.value,
                month.unit,
                "" if month.last_year is None else month.last_year,
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="usage-{account["account_number"]}.csv"',
            "Cache-Control": "private, no-store",
        },
    )


def handlers(settings: Settings) -> list:
    return [dashboard, link_form, link, unlink, bills, bill, bill_download, usage, usage_csv]
