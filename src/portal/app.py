"""The application factory: wiring only. Each feature's routes live in its package."""

from __future__ import annotations

from litestar import Litestar, Request
from litestar.config.compression import CompressionConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.logging import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from portal import i18n
from portal.accounts import routes as accounts
from portal.accounts import sessions
from portal.accounts.service import AccountsService
from portal.billing import routes as billing
from portal.billing.service import BillingService
from portal.db import Database
from portal.mail import Mailer, OutboxSender
from portal.mail import routes as mail
from portal.pages import routes as pages
from portal.payments import routes as payments
from portal.payments.sandbox import SandboxGateway
from portal.payments.service import PaymentsService
from portal.security.csrf import CSRFGuard
from portal.security.errors import http_error, server_error
from portal.security.headers import security_headers_hook
from portal.settings import Settings
from portal.templating import STATIC_DIR, make_environment
from portal.web import PortalRequest


async def _before_request(request: Request) -> None:
    """Choose the resident's language and load who is signed in, for every request."""
    wanted = request.cookies.get(i18n.LOCALE_COOKIE, i18n.DEFAULT_LOCALE)
    i18n.current_locale.set(wanted if wanted in i18n.LOCALES else i18n.DEFAULT_LOCALE)
    request.state.user = None
    if not request.url.path.startswith("/static/"):
        db = request.app.state.db
        request.state.user = await sessions.load(db, request.cookies.get(sessions.COOKIE))


def _accounts_service(state: State) -> AccountsService:
    return AccountsService(state.db, state.settings, state.mailer)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    db = Database(settings.database)

    async def open_db() -> None:
        await db.open()

    async def close_db() -> None:
        await db.close()

    env = make_environment(settings)  # shared by pages and emails
    sender = OutboxSender(settings, db)
    mailer = Mailer(settings, env, on_enqueue=sender.wake)
    gateway = SandboxGateway(db, settings)
    payments_service = PaymentsService(db, settings, mailer, gateway)
    gateway.notify = payments_service.handle_notification  # the sandbox "POSTs" its events here

    async def start_sender() -> None:
        if settings.smtp_host:  # without SMTP the outbox waits (dev: /dev/mailbox)
            sender.start()

    async def stop_sender() -> None:
        await sender.stop()

    csrf = CSRFConfig(
        secret=settings.secret_key,
        cookie_name="portal_csrf",
        cookie_secure=settings.production,
        cookie_httponly=True,
        cookie_samesite="lax",
        exclude=["/static/"],  # files need no token cookie; pages set it
    )
    route_handlers = [
        *pages.handlers(settings),
        *mail.handlers(settings),
        *accounts.handlers(settings),
        *billing.handlers(settings),
        *payments.handlers(settings),
        create_static_files_router(
            path="/static",
            directories=[STATIC_DIR],
            cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        ),
    ]
    return Litestar(
        route_handlers=route_handlers,
        state=State({"settings": settings, "db": db, "mailer": mailer, "sender": sender}),
        dependencies={
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "db": Provide(lambda: db, sync_to_thread=False),
            "mailer": Provide(lambda: mailer, sync_to_thread=False),
            "sender": Provide(lambda: sender, sync_to_thread=False),
            "accounts": Provide(_accounts_service, sync_to_thread=False),
            "billing": Provide(lambda: BillingService(db, settings), sync_to_thread=False),
            "payments": Provide(lambda: payments_service, sync_to_thread=False),
            "sandbox": Provide(lambda: gateway, sync_to_thread=False),
        },
        on_startup=[open_db, start_sender],
        on_shutdown=[stop_sender, close_db],  # run in this order: sender first
        before_request=_before_request,
        request_class=PortalRequest,
        before_send=[security_headers_hook(settings.production)],
        template_config=TemplateConfig(instance=JinjaTemplateEngine.from_environment(env)),
        # Litestar's CSRF check (as csrf_config would install it), minus its crash on
        # non-ASCII or file tokens: see security/csrf.py.
        middleware=[DefineMiddleware(CSRFGuard, config=csrf)],
        compression_config=CompressionConfig(
            backend="gzip", minimum_size=500, gzip_compress_level=6
        ),
        plugins=[HTMXPlugin()],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        logging_config=LoggingConfig(
            root={"level": "INFO", "handlers": ["queue_listener"]},
            log_exceptions="never",
        ),
        debug=False,
    )
