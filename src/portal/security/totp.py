"""The second factor of staff (always) and residents (two-step verification, if they
turn it on): TOTP codes (RFC 6238, pyotp), each time step accepted once, the otpauth URI
drawn as a QR code in SVG (segno) on the server, and single-use recovery codes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

import pyotp
import segno

STEP = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def new_secret() -> str:
    return pyotp.random_base32()


def uri(secret: str, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(text: str, title: str) -> str:
    """The QR code as an inline <svg> with presentation attributes only (no style
    attribute, so the strict CSP allows it), named for screen readers by its title."""
    svg = segno.make(text, error="m").svg_inline(
        scale=5, title=title, svgclass="qr-code", lineclass=None, dark="#000", light="#fff"
    )
    return svg.replace("<svg ", '<svg role="img" ', 1)


def matching_step(
    secret: str, code: str, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step whose code this is (the current one or a neighbour, for clock
    drift), if it is later than the last step used; else None (wrong or replayed)."""
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int((now if now is not None else time.time()) // STEP)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP), code) and (
            last_step is None or step > last_step
        ):
            return step
    return None


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{chars[:5]}-{chars[5:]}")
    return codes


def recovery_hash(code: str, whose: str = "staff") -> str:
    """Codes are compared without dashes, spaces or case. 50 random bits each, so a
    plain SHA-256 is enough (nothing to guess from the hash in ten single uses). `whose`:
    "staff" or "resident" (a code of one kind never matches the other)."""
    cleaned = re.sub(r"[\s-]", "", code).lower()
    return hashlib.sha256(f"{whose}-recovery:{cleaned}".encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    return len(re.sub(r"[\s-]", "", code)) == 10
