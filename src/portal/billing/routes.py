"""My Account over HTTP: dashboard, bills, usage, linking accounts.

URL map (one router, guarded by requires_resident, no-store; another resident's account
answers 404, audited):
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

from litestar import Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.accounts.linking import ClaimForm
from portal.billing.chart import usage_chart_svg
from portal.billing.pdf import bill_pdf
from portal.billing.service import BillingService
from portal.i18n import _
from portal.security.auth import requires_resident
from portal.security.filenames import attachment
from portal.security.headers import NO_STORE
from portal.security.throttle import enforce
from portal.services import AppServices
from portal.settings import Settings
from portal.templating import month_year
from portal.web import PortalRequest, client_address, render


async def _own_account(request: PortalRequest, billing: BillingService, account_id: int):
    """The resident's own account, or 404 (and an audit row) for anybody else's."""
    account = await billing.own_account(
        request.user, account_id, client_address(request), request.url.path
    )
    if account is None:
        raise NotFoundException()
    return account


@get("/account")
async def dashboard(request: PortalRequest, services: AppServices) -> Template:
    summaries = await services.billing.dashboard(request.user.user_id)
    profile = await services.profiles.profile(request.user.user_id)
    notice = {
        "linked": _("The account was added to your login."),
        "unlinked": _("The account was removed from your login."),
        "dismissed": _("The notice was removed."),
    }.get(request.query_params.get("notice", ""))
    alert = {"kind": "success", "title": notice, "body": None} if notice else None
    return render(
        request,
        "pages/dashboard.html",
        summaries=summaries,
        profile=profile,
        alert=alert,
        today=services.billing.today(),
        card_flags=await services.expiry.flags(request.user.user_id),
        autopay=await services.autopay.statuses([s.account["id"] for s in summaries]),
        failed_scheduled={
            s.account["id"]: await services.scheduled.failed(s.account["id"]) for s in summaries
        },
    )


@get("/account/link")
async def link_form(request: PortalRequest) -> Template:
    return render(request, "pages/link_account.html")


@post("/account/link")
async def link(request: PortalRequest, services: AppServices) -> Template | Redirect:
    await enforce(services.lookups, services.linking.db, client_address(request), request.url.path)
    form = await ClaimForm.read(request)
    result = await services.linking.link(request.user, form, client_address(request))
    if not result.ok:
        return render(
            request,
            "pages/link_account.html",
            status_code=422,
            errors=result.errors,
            values=form.values,
        )
    return Redirect("/account?notice=linked", status_code=303)


@post("/accounts/{account_id:int}/unlink")
async def unlink(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Redirect:
    await _own_account(request, services.billing, account_id)
    await services.linking.unlink(request.user, account_id, client_address(request))
    return Redirect("/account?notice=unlinked", status_code=303)


@get("/accounts/{account_id:int}/bills")
async def bills(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template:
    account = await _own_account(request, services.billing, account_id)
    return render(
        request,
        "pages/bills.html",
        account=account,
        bills=await services.billing.bills(account_id),
        payments=await services.billing.payments(account_id),
    )


@get("/accounts/{account_id:int}/bills/{bill_id:int}")
async def bill(
    request: PortalRequest, account_id: FromPath[int], bill_id: FromPath[int], services: AppServices
) -> Template:
    account = await _own_account(request, services.billing, account_id)
    found = await services.billing.bill(account_id, bill_id)
    if found is None:
        raise NotFoundException()
    unit = unit_name(await services.billing.unit(account_id))
    return render(request, "pages/bill.html", account=account, bill=found, unit=unit)


@get("/accounts/{account_id:int}/bills/{bill_id:int}/pdf")
async def bill_download(
    request: PortalRequest, account_id: FromPath[int], bill_id: FromPath[int], services: AppServices
) -> Response:
    account = await _own_account(request, services.billing, account_id)
    found = await services.billing.bill(account_id, bill_id)
    if found is None:
        raise NotFoundException()
    unit = await services.billing.unit(account_id)
    content = bill_pdf(
        dict(found),
        dict(account),
        services.settings.utility_name,
        services.settings.support_phone,
        labels={"consumption_unit": unit_name(unit)},
    )
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": attachment(f"bill-{found['bill_number']}.pdf"),
            "Cache-Control": "private, no-store",
        },
    )


def unit_name(unit: str) -> str:
    """The billing system's unit code in the resident's language."""
    return {"HCF": _("HCF"), "gallons": _("gallons")}.get(unit, unit)


@get("/accounts/{account_id:int}/usage")
async def usage(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template:
    account = await _own_account(request, services.billing, account_id)
    months = await services.billing.usage(account_id)
    leak = services.billing.possible_leak(months)
    unit = unit_name(months[-1].unit if months else "HCF")
    points = [
        {
            "label": month_year(m.read_date),
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
    labels = {m.read_date: month_year(m.read_date) for m in months}
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
async def usage_csv(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Response:
    account = await _own_account(request, services.billing, account_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["account_number", "read_date", "consumption", "unit", "same_month_last_year"])
    for month in await services.billing.usage(account_id):
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
        media_type="text/csv",
        headers={
            "Content-Disposition": attachment(f"usage-{account['account_number']}.csv"),
            "Cache-Control": "private, no-store",
        },
    )


def handlers(settings: Settings) -> list:
    return [
        Router(
            path="/",
            guards=[requires_resident],
            cache_control=NO_STORE,
            route_handlers=[
                dashboard,
                link_form,
                link,
                unlink,
                bills,
                bill,
                bill_download,
                usage,
                usage_csv,
            ],
        )
    ]
