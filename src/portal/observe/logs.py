"""Request ids and the log format.

Every request gets a short id, easy to read out on the phone. It is sent back as the
`X-Request-ID` header, shown on the error page, and put on every log line written while
the request runs, so a resident's call to Customer Services can be matched to the log.

One line per request (logger `portal.request`): method, path without its query string
(emailed links carry one-time codes there), status, route template, duration.

PORTAL_LOG_FORMAT=json writes one JSON object per line: time, level, logger, event,
request_id, and for request lines method, path, route, status and duration_ms.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from litestar.logging import LoggingConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from portal.observe.metrics import record_request

log = logging.getLogger("portal.request")

# No 0/O, 1/I/L: the id is read out over the phone.
ID_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
request_id: ContextVar[str] = ContextVar("request_id", default="-")

REQUEST_FIELDS = ("method", "path", "route", "status", "duration_ms")


# byte -> its letter (byte % 31), for bytes.translate
_ID_TABLE = bytes(ord(ID_ALPHABET[b % 31]) for b in range(256))


def new_request_id() -> str:
    """Ten characters from one read of the system's random source (not ten: this runs
    for every request). 31 letters leave a small bias that an id does not mind."""
    return secrets.token_bytes(10).translate(_ID_TABLE).decode("ascii")


def current_request_id() -> str | None:
    value = request_id.get()
    return None if value == "-" else value


_previous_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Records are made in the thread that logs, where the request's context is set;
    formatting may happen later in Litestar's queue listener thread."""
    record = _previous_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


if _previous_factory.__name__ != _record_with_request_id.__name__:
    logging.setLogRecordFactory(_record_with_request_id)

# What our formats never print, so no record gathers it (the logging HOWTO's
# "Optimization"): the calling file and line (a walk up the stack for every line), the
# thread, process and task names.
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False
logging.logAsyncioTasks = False


class RequestLog:
    """Outermost ASGI wrapper (every request, 404s and static files included): sets
    the request id, adds the header, writes the request's log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = (time.perf_counter() - started) * 1000
            route = scope.get("path_template") or "-"
            record_request(scope.get("method", "-"), route, status, took / 1000)
            path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
            if "?" in path or scope.get("query_string"):
                path = path.split("?", 1)[0] + "?…"
            write_request_line(rid, scope.get("method", "-"), path, status, route, took)
            request_id.reset(token)


REQUEST_LINE = "%s %s %s route=%s %.1fms"


def write_request_line(rid: str, method: str, path: str, status: int, route: str, took: float):
    """The request's line, in the configured format. Through `logging` it took about a
    tenth of a per-field check's time (a record, a handler lock and a dozen calls for one
    line): when logging is as `logging_config` set it up (the root's one stream handler
    with one of our formatters), the formatter writes the line itself, the same text
    logging would write (tests/test_access_log.py). Anything else that listens (a test's
    capture, an operator's handler) gets it through `logging` as before."""
    fields = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(took, 1),
    }
    message = REQUEST_LINE % (method, path, status, route, took)
    handler = _only_our_handler()
    if handler is not None:
        line = handler.formatter.request_line(time.time(), rid, message, fields)  # type: ignore[union-attr]
        try:
            with handler.lock:  # type: ignore[union-attr]
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
            return
        except Exception:  # noqa: BLE001 - logging's own path reports a broken stream
            pass
    log.info("%s", message, extra={"event": "request", **fields})


def _only_our_handler() -> logging.StreamHandler | None:
    """The root's one stream handler with our formatter, if a request's record would
    reach it and nothing else; None otherwise."""
    root = logging.root
    logger = log
    while logger is not root:  # portal.request, portal: no handlers, filters, or stops
        if logger.handlers or logger.filters or logger.disabled or not logger.propagate:
            return None
        logger = logger.parent
    if root.filters or len(root.handlers) != 1 or not log.isEnabledFor(logging.INFO):
        return None
    handler = root.handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) not in (TextFormatter, JsonFormatter)
    ):
        return None
    return handler


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = {name: getattr(record, name) for name in REQUEST_FIELDS if hasattr(record, name)}
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self._line(
            record.created,
            record.levelname,
            record.name,
            getattr(record, "event", None) or message,
            getattr(record, "request_id", "-"),
            message,
            fields,
            exception,
        )

    def request_line(self, created: float, rid: str, message: str, fields: dict) -> str:
        return self._line(created, "INFO", log.name, "request", rid, message, fields)

    @staticmethod
    def _line(
        created: float,
        level: str,
        logger: str,
        event: str,
        rid: str,
        message: str,
        fields: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": level.lower(),
            "logger": logger,
            "event": event,
            "request_id": rid,
        }
        if event != message:
            entry["message"] = message
        entry.update(fields)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, always (`2026-12-03 12:51:14,221 INFO …`), with the date and time to
    the second made once per second, not once per line (time.strftime was a fifth of
    writing a request's line)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads may share a formatter

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)

    def request_line(self, created: float, rid: str, message: str, fields: dict) -> str:
        """TEXT_FORMAT for a request's line at `created`, as format() makes it."""
        record = _TimeOnly(created)
        return f"{self.formatTime(record)} INFO {log.name} [{rid}] {message}"


class _TimeOnly:
    """What formatTime reads of a record: its time, and its milliseconds as LogRecord
    computes them."""

    __slots__ = ("created", "msecs")

    def __init__(self, created: float) -> None:
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0


def formatter_config(log_format: str) -> dict[str, Any]:
    if log_format == "json":
        return {"()": JsonFormatter}
    return {"()": TextFormatter}


def logging_config(log_format: str) -> LoggingConfig:
    """The app's logging: our format, written straight to stderr. (Litestar's default,
    a queue and a listener thread, woke that thread for every request line: the handoff
    of the interpreter lock cost more than writing the line, which is what uvicorn's own
    access log does.)"""
    return LoggingConfig(
        root={"level": "INFO", "handlers": ["console"]},
        formatters={"standard": formatter_config(log_format)},
        log_exceptions="never",
    )


def uvicorn_log_config(log_format: str) -> dict:
    """uvicorn's own lines (start-up, errors) in the same format. Its access log is
    off (`portal serve` passes access_log=False): RequestLog writes a better line."""
    from portal.security.logs import uvicorn_log_config as base

    config = base()
    config["formatters"]["default"] = formatter_config(log_format)
    config["formatters"]["access"] = formatter_config(log_format)
    return config
