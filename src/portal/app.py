"""The application factory: wiring only. Each feature's routes live in its package."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.htmx import HTMXPlugin
from litestar.template.config import TemplateConfig

from portal.accounts import routes as accounts
from portal.autopay import routes as autopay
from portal.autopay.jobs import JobsLoop
from portal.billing import routes as billing
from portal.compression import GzipPages
from portal.head_requests import HeadAsGet
from portal.mail import routes as mail
from portal.notices import routes as notices
from portal.observe import logs as observe_logs
from portal.observe import routes as observe
from portal.pages import routes as pages
from portal.pages.notice import SiteNotice
from portal.payments import routes as payments
from portal.payments.reconciler import Reconciler
from portal.security import cookies
from portal.security.auth import SessionAuth
from portal.security.csrf import CSRFGuard
from portal.security.errors import http_error, server_error
from portal.security.headers import no_store_hook, security_headers_hook
from portal.security.limits import FORM_MAX_BYTES, FormLimits
from portal.security.proxies import ProxyWatch
from portal.security.refusals import flush_refusals
from portal.services import Services
from portal.settings import Settings
from portal.shared_pages import SharedPages
from portal.staff import routes as staff
from portal.static_files import StaticFiles
from portal.templating import STATIC_DIR, PageTemplates, make_environment
from portal.web import PortalRequest


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    env = make_environment(settings)  # shared by pages and emails
    services = Services.build(settings, env)
    reconciler = Reconciler(services.payments)  # a real processor's pending payments
    jobs = JobsLoop(services, settings.jobs_every_seconds)  # AutoPay, reminders, clean-up
    notice = SiteNotice(services.db, settings.notice_refresh_seconds)  # `portal notice set`
    env.globals["site_notice"] = notice.text

    async def start() -> None:
        await services.db.open()
        if settings.smtp_host:  # without SMTP the outbox waits (dev: /dev/mailbox)
            services.sender.start()
        await reconciler.start()
        await jobs.start()
        await notice.start()

    async def stop() -> None:
        await notice.stop()
        await jobs.stop()
        await reconciler.stop()
        await services.sender.stop()  # the sender first: it writes to the database
        await flush_refusals(app.state)  # counts of refused forms (security/refusals.py)
        await services.db.close()

    csrf = cookies.csrf_config(settings, exclude=observe.PATHS)  # no token for probes
    proxy_watch = ProxyWatch(settings)  # warns once about a proxy left untrusted
    route_handlers = [
        *pages.handlers(settings),
        *mail.handlers(settings),
        *accounts.handlers(settings),
        *billing.handlers(settings),
        *payments.handlers(settings),
        *observe.handlers(settings),
        *staff.handlers(settings),
        *autopay.handlers(settings),
        *notices.handlers(settings),
    ]
    app = Litestar(
        route_handlers=route_handlers,
        state=State(
            {
                "services": services,
                "reconciler": reconciler,
                "jobs": jobs,
                "proxy_watch": proxy_watch,
                "site_notice": notice,
            }
        ),
        dependencies=services.dependencies(),
        on_startup=[start],
        on_shutdown=[stop],
        request_class=PortalRequest,
        before_send=[
            security_headers_hook(settings.production, env.globals["inline_style"]),
            no_store_hook,
            proxy_watch.before_send,
        ],
        template_config=TemplateConfig(instance=PageTemplates.from_environment(env)),
        middleware=[
            # __Host- cookie names on the wire in production (security/cookies.py).
            DefineMiddleware(cookies.HostPrefixCookies, production=settings.production),
            # Forms over 64 KB or 200 fields are refused before anything parses them.
            DefineMiddleware(FormLimits, max_bytes=min(FORM_MAX_BYTES, settings.max_body_bytes)),
            # Who is signed in, once per request (request.user); static files and the
            # health and metrics probes need nobody.
            DefineMiddleware(SessionAuth, exclude=["^/static/", *observe.EXCLUDE]),
            # Litestar's CSRF check (as csrf_config would install it), minus its crash on
            # non-ASCII or file tokens: see security/csrf.py.
            DefineMiddleware(CSRFGuard, config=csrf),
        ],
        plugins=[HTMXPlugin()],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        logging_config=observe_logs.logging_config(settings.log_format),
        debug=False,
    )
    # Outside Litestar's routing, inside its before_send hooks (security headers): the
    # request id and log line for everything; /static/ from memory (static_files.py);
    # signed-out pages rendered once per language (shared_pages.py).
    # Pages Litestar renders are gzipped by GzipPages (compression.py), at level 4: within
    # 1-3% of level 6's size on our pages at about three quarters of its time (BENCHMARKS).
    # HEAD is answered as GET without the body (head_requests.py).
    app.asgi_handler = observe_logs.RequestLog(
        StaticFiles(
            HeadAsGet(SharedPages(GzipPages(app.asgi_handler, level=4), settings, notice)),
            STATIC_DIR,
            settings.reload_templates,
        )
    )
    return app
