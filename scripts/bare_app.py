"""The baseline for bench_server.py: a bare Litestar route answering "ok"."""

from litestar import Litestar, get


@get("/", sync_to_thread=False)
def ok() -> str:
    return "ok"


app = Litestar([ok], openapi_config=None)
