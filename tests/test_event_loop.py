"""No request waits on a worker thread it does not need.

Litestar runs a sync guard, dependency or handler in a worker thread unless told not
to: a hop to the thread and back, an extra turn of the event loop and a wake-up through
a socket, for code that takes microseconds. Every signed-in page paid one for its
`requires_resident` guard (145 µs of CPU per request, more than the rest of Litestar's
work on it). Work that does wait (a write, a long read) goes to the database's own
threads (db.py), never through these.
"""

from __future__ import annotations

import inspect

from litestar.utils.sync import AsyncCallable

from portal.app import create_app
from portal.settings import Settings


def test_no_guard_dependency_or_handler_runs_in_a_worker_thread(tmp_path):
    app = create_app(Settings(database=tmp_path / "portal.sqlite3"))
    threaded = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            name = f"{route.path} {handler.fn.__name__}"
            for guard in handler.resolve_guards():
                if isinstance(guard, AsyncCallable) or not inspect.iscoroutinefunction(guard):
                    threaded.append(f"{name}: guard {getattr(guard, 'func', guard).__name__}")
            if handler.has_sync_callable and handler.sync_to_thread:
                threaded.append(f"{name}: handler")
            for key, provide in handler.resolve_dependencies().items():
                if provide.has_sync_callable and provide.sync_to_thread:
                    threaded.append(f"{name}: dependency {key}")
    assert not threaded, "make these async (or sync_to_thread=False): " + ", ".join(threaded)
