"""Undelivered email is kept sealed, so a copy of the database hands out no live links.

Emails wait in the outbox until SMTP takes them (forever, without SMTP), and their
bodies hold one-time links: verification, password reset, email change. In production
the outbox keeps each body encrypted and authenticated (Fernet: AES-128-CBC with
HMAC-SHA256, from the `cryptography` package) under a key derived from
PORTAL_SECRET_KEY with HKDF, and the sender opens it just before handing it to SMTP.
A backup or a stolen database file without the secret key shows addresses and subjects,
never a link. Once sent, the bodies are emptied anyway (see portal.mail.sender).

Development keeps bodies readable: its secret key is the public development key, so
sealing would protect nothing, and /dev/mailbox shows them.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal.settings import Settings

PREFIX = "sealed1:"


class UnsealError(ValueError):
    """A sealed body that this secret key cannot open (the key changed, or tampering)."""


@lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal outbox v1").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(settings: Settings, text: str) -> str:
    """`text` sealed for storage in production; unchanged in development."""
    if not settings.production:
        return text
    return PREFIX + _fernet(settings.secret_key).encrypt(text.encode()).decode("ascii")


def unseal(settings: Settings, stored: str) -> str:
    """The text of a stored body, sealed or not."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet(settings.secret_key).decrypt(stored[len(PREFIX) :].encode()).decode()
    except Exception as exc:  # InvalidToken, or not text
        raise UnsealError(
            "a sealed outbox body cannot be opened with this PORTAL_SECRET_KEY"
        ) from exc
