"""gzip only for a client whose Accept-Encoding takes it (RFC 9110, 12.5.3), on the three
ways an answer is compressed: shared signed-out pages, pages Litestar renders, static
files."""

from __future__ import annotations

import pytest

from portal.compression import accepts_gzip

# The landing page comes from shared_pages.py, the 404 page through GzipPages
# (compression.py), site.css from static_files.py.
PATHS = ("/", "/no-such-page", "/static/css/site.css")


@pytest.mark.parametrize(
    ("accept_encoding", "gzip"),
    [
        (b"gzip, deflate, br, zstd", True),  # what browsers send
        (b"GZIP", True),
        (b"x-gzip", True),
        (b"*", True),
        (b"br;q=1.0, gzip;q=0.8", True),
        (b"gzip;q=0", False),
        (b"deflate, gzip;q=0.000", False),
        (b"gzip;q=0, *", False),  # named with q=0: not taken, whatever * says
        (b"identity;q=1, *;q=0", False),
        (b"gzip;q=nonsense", False),
        (b"identity", False),
        (b"", False),
    ],
)
def test_which_accept_encoding_values_take_gzip(accept_encoding, gzip):
    assert accepts_gzip(accept_encoding) is gzip


async def test_gzip_q_0_gets_the_plain_body_everywhere(client):
    for path in PATHS:
        client.cookies.clear()
        plain = await client.get(path, headers={"accept-encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in plain.headers, path
        assert int(plain.headers["content-length"]) == len(plain.content) > 500, path
        for takes in ("gzip, deflate, br", "*"):
            client.cookies.clear()
            packed = await client.get(path, headers={"accept-encoding": takes})
            assert packed.headers["content-encoding"] == "gzip", (path, takes)
            assert "accept-encoding" in packed.headers["vary"].lower(), path
