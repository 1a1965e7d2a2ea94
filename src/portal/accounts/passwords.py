"""Password hashing (argon2id, off the event loop) and the password rules.

Parameters are OWASP's floor for argon2id (m=19 MiB, t=2, p=1): about 35 ms per hash on
the 2-core reference machine, so 20 sign-ins a second leave the CPU room for pages.
Hashes made with older parameters are upgraded at the next sign-in.
"""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from portal.accounts.validation import confirm_password_problem
from portal.i18n import _
from portal.settings import Settings

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
MAX_LENGTH = 256  # NIST asks for at least 64; more than this is a paste gone wrong
# Verifying against this keeps unknown usernames as slow as known ones.
_DUMMY_HASH = HASHER.hash("not a real password, only spends the same time")
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])


def normalize(password: str) -> str:
    """NFKC, so the same password typed on two keyboards hashes the same (NIST)."""
    return unicodedata.normalize("NFKC", password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, normalize(password))


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return HASHER.verify(stored_hash or _DUMMY_HASH, normalize(password))
        except (VerificationError, InvalidHashError):
            return False

    ok = await asyncio.to_thread(check)
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    return HASHER.check_needs_rehash(stored_hash)


def password_problem(
    password: str, *, min_length: int, username: str = "", email: str = "", utility: str = ""
) -> str | None:
    """The reason a new password cannot be used, in the resident's words, or None."""
    if not password:
        return _("Enter a password")
    password = normalize(password)
    if len(password) < min_length:
        return _(
            "Your password must be at least %(min)s characters long. You entered %(count)s.",
            min=min_length,
            count=len(password),
        )
    if len(password) > MAX_LENGTH:
        return _("Your password must be %(max)s characters or fewer", max=MAX_LENGTH)
    lowered = password.casefold()
    if username and len(username) >= 3 and username.casefold() in lowered:
        return _("Your password must not contain your username")
    local_part = email.split("@", 1)[0].casefold()
    if email and len(local_part) >= 3 and local_part in lowered:
        return _("Your password must not contain your email address")
    for word in utility.casefold().split():
        if len(word) >= 5 and word in lowered and word not in {"municipal", "company"}:
            return _("Your password must not contain the name of the utility")
    if lowered in _COMMON:
        return _("This password is on a list of common passwords. Choose a different one")
    # zxcvbn raises ValueError above 72 characters; the first 72 are plenty to judge.
    result = zxcvbn(password[:72], user_inputs=[username, email, *utility.split()])
    if result["score"] < 3:
        patterns = {match["pattern"] for match in result["sequence"]}
        if "repeat" in patterns:
            return _(
                "This password repeats letters or words, so it is easy to guess. Choose a different one"
            )
        if "sequence" in patterns or "spatial" in patterns:
            return _(
                "This password follows a pattern like abcd, 1234 or qwerty, so it is easy to guess. Choose a different one"
            )
        return _(
            "This password is made of common words or passwords, so it is easy to guess. Add more words that are not common"
        )
    return None


async def new_password_problem(
    settings: Settings, password: str, username: str, email: str
) -> str | None:
    """The password rules, in a worker thread: the strength estimate takes milliseconds
    of CPU that the event loop should spend on other residents."""
    return await asyncio.to_thread(
        password_problem,
        password,
        min_length=settings.password_min_length,
        username=username,
        email=email,
        utility=settings.utility_name,
    )


async def new_password_problems(
    settings: Settings, password: str, confirm: str, username: str, email: str, name: str
) -> dict[str, str]:
    """Messages for a new password field `name` and its `confirm_<name>` field."""
    errors = {}
    problem = await new_password_problem(settings, password, username, email)
    if problem:
        errors[name] = problem
    problem = confirm_password_problem(password, confirm)
    if problem:
        errors[f"confirm_{name}"] = problem
    return errors
