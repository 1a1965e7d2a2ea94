"""The application factory: wiring only. Each feature's routes live in its package."""

from __future__ import annotations

from litestar import Litestar, Request
from litestar.config.compression import CompressionConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.logging import LoggingConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from portal import i18n
from portal.db import Database
from portal.pages import routes as pages
from portal.security.errors import http_error, server_error
from portal.security.headers import security_headers_hook
from portal.settings import Settings
from portal.templating import STATIC_DIR, make_environment

LOCALE_COOKIE = "portal_lang"


def _choose_locale(request: Request) -> None:
    wanted = request.cookies.get(LOCALE_COOKIE, i18n.DEFAULT_LOCALE)
    i18n.current_locale.set(wanted if wanted in i18n.LOCALES else i18n.DEFAULT_LOCALE)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    db = Database(settings.database)

    async def open_db() -> None:
        await db.open()

    async def close_db() -> None:
        await db.close()

    route_handlers = [
        *pages.handlers(settings),
        create_static_files_router(
            path="/static",
            directories=[STATIC_DIR],
            cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        ),
    ]
    return Litestar(
        route_handlers=route_handlers,
        state=State({"settings": settings, "db": db}),
        dependencies={
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "db": Provide(lambda: db, sync_to_thread=False),
        },
        on_startup=[open_db],
        on_shutdown=[close_db],
        before_request=_choose_locale,
        before_send=[security_headers_hook(settings.production)],
        template_config=TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(make_environment(settings))
        ),
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="portal_csrf",
            cookie_secure=settings.production,
            cookie_httponly=True,
            cookie_samesite="lax",
        ),
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
