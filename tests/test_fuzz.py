"""Property-based fuzzing (Hypothesis) of every form, validation endpoint and query string.

Random and malicious values go to the real app over HTTP (litestar's sync TestClient,
a real SQLite file per test function): huge strings, control characters, NUL bytes, odd
Unicode (RTL marks, combining characters, emoji, lone surrogates sent as the bytes
surrogateescape / surrogatepass make of them), missing and repeated fields, wrong types
(JSON, multipart files, plain text), SQL and HTML/JS payloads. Whatever arrives:

- the answer is never a 5xx and never shows a stack trace;
- an HTML payload never comes back unescaped;
- a 4xx HTML answer says what went wrong (error summary, inline message, or the
  friendly error page);
- a redirect stays on this site;
- the database stays consistent: integrity and foreign keys check out, and every user
  row is a complete registration (valid username, verification token, audit row, and a
  linked service account unless the resident unlinked it).

Each test function drives one group of endpoints with its own app and database; a
Hypothesis example is one or a few requests against that shared app.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from portal import db as portal_db
from portal.accounts.passwords import HASHER, normalize
from portal.accounts.registration import REGISTRATION_FIELDS
from portal.accounts.tokens import code_hash, new_code, utc_in
from portal.app import create_app
from portal.billing.importer import import_text
from portal.payments.gateway import SIGNATURE_HEADER, sign
from portal.settings import Settings

from resident_steps import registration
from sample_data import GOOD_PASSWORD, load_billing

HOST = "portal.test"
HOUR = timedelta(hours=1)
FUZZ = dict(
    deadline=None,
    database=None,  # failures print their example; no .hypothesis/ directory left behind
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --- values ----------------------------------------------------------------------------

SQL = [
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1 UNION SELECT password_hash FROM users",
    "maria1'--",
    "12345' OR '1'='1",
]
HTML = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
]
# Strings that never occur in our pages; if one shows up, a payload came back raw.
# (Escaped, as &lt;img src=x onerror=alert(1)&gt;, a payload is harmless text.)
RAW_MARKERS = ("<script>alert", "<img src=x", "<svg onload", '"><img', 'href="javascript:')
ODD = [
    "",
    " ",
    "\x00",
    "maria1\x00",
    "a\x00b",
    "\r\n",
    "x\r\nSet-Cookie: evil=1",
    "\t\x0b\x0c",
    "\x1b[31mred",
    "\x7f\x80\x9f",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e\u200b",  # RTL/LTR marks, zero width space
    "e\u0301\u0301\u0301\u0301",  # combining accents
    "Z\u0351\u0334\u0353\u0322",
    "👩‍👩‍👧‍👦🙂💧",
    "\ufeffBOM",
    "\uffff\ufffe",
    "\udcff\udc80",  # surrogate-escaped bytes: sent as raw invalid UTF-8
    "\ud800",  # lone surrogate: sent as its surrogatepass bytes
    "１２３４５",  # fullwidth digits
    "١٢٣٤٥",  # Arabic-Indic digits
    "²³",
    "0" * 40,
    "9" * 30,
    "-1",
    "0",
    "1e999",
    "NaN",
    "Infinity",
    "84.10",
    "$1,000,000.00",
    "12345",
    "67890",
    "0012345",
    "0067890",
    "12 345",
    "maria1",
    "Maria1",
    "maria@example.com",
    "%00",
    "%ED%A0%80",
    "../../etc/passwd",
    "//evil.example",
    "/\\evil.example",
    "null",
    "true",
    "[]",
    "{}",
    "{{ 7*7 }}",
    "${7*7}",
    GOOD_PASSWORD,
    "4242 4242 4242 4242",
    "12/39",
]
SPECIAL = SQL + HTML + ODD

any_char = st.characters(exclude_categories=())  # surrogates and control characters too
short_text = st.text(any_char, max_size=40)
mixed = st.builds(
    lambda a, payload, b: a + payload + b,
    st.text(any_char, max_size=8),
    st.sampled_from(SQL + HTML),
    st.text(any_char, max_size=8),
)


def to_bytes(value: str) -> bytes:
    """What a client would send for this text: UTF-8, lone surrogates as raw bytes."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def answered(response, *allowed: int) -> bool:
    """The answer's status is one of `allowed`; or, for a multipart body with a field
    that is not UTF-8, 403: such a body cannot be read, nor the CSRF token in it, so it
    is refused like a forged form ("This form could not be sent", which check() asks
    for), as tests/test_security.py shows for a broken multipart body."""
    if getattr(response, "form_unreadable", False) and response.status_code == 403:
        return True
    return response.status_code in allowed


def repeat_to(unit: str, length: int) -> str:
    """`unit` repeated to about `length` bytes once URL-encoded."""
    unit = unit or "x"
    return unit * max(1, length // len(quote_plus(to_bytes(unit))))


def long_values(low: int, high: int):
    return st.builds(
        repeat_to,
        st.one_of(
            st.sampled_from([s for s in SPECIAL if s]), st.text(any_char, min_size=1, max_size=5)
        ),
        st.integers(low, high),
    )


huge = long_values(1_000, 100_000)  # bodies: up to ~100 KB a value, under the 1 MB limit
# Numbers as residents and attackers type them: other scripts' digits ("²".isdigit() is
# True, int("²") fails), more digits than SQLite's 64-bit integers or int() accept.
NUMBERISH = [
    "1",
    "2",
    "0",
    "-1",
    "+1",
    " 1",
    "1.0",
    "1_000",
    "0x10",
    "1e3",
    "²³",
    "١٢٣",
    "１２３",
    "৪",
    "9223372036854775807",
    "9223372036854775808",
    "9" * 19,
    "9" * 30,
    "9" * 5_000,
    "-" + "9" * 30,
]
numberish = st.one_of(
    st.sampled_from(NUMBERISH),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(2**63, 2**80).map(str),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),  # ٣, ², ①
    st.sampled_from(["²", "²³", "①", "٣²", "9²", "1⁰"]),  # isdigit() but not int()
)
# Lengths at the limits: usernames 32, zxcvbn 72, emails 254, passwords 256.
at_a_limit = st.builds(
    lambda unit, n: (unit * n)[:n],
    st.sampled_from(["a", "Aa1 ", "é", "🙂", "<script>", "' OR 1=1 --"]),
    st.sampled_from([31, 32, 33, 64, 72, 73, 100, 200, 254, 255, 256, 257]),
)
small = st.one_of(st.sampled_from(SPECIAL), short_text, mixed, numberish, at_a_limit)
# Mostly small values; one in ten is huge. In a URL (httpx stops at 64 KB) up to 8 KB.
values = st.integers(0, 9).flatmap(lambda n: huge if n == 0 else small)
url_values = st.integers(0, 9).flatmap(lambda n: long_values(500, 8_000) if n == 0 else small)
extra_keys = st.one_of(
    st.sampled_from(["id", "user_id", "is_admin", "amount_cents", "x" * 300]),
    st.text(any_char, min_size=1, max_size=10).filter(lambda key: key != "_csrf_token"),
)

Pairs = list[tuple[str, str]]


@st.composite
def mutated(draw, real: str) -> str:
    """A real token or reference, slightly wrong: the shape passes, the content does not."""
    how = draw(st.sampled_from(["digits", "digits", "char", "cut", "grow", "case", "payload"]))
    if how == "digits":  # the same digits from another script, before the last "." (a MAC)
        script = draw(st.sampled_from(["٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "⁰¹²³⁴⁵⁶⁷⁸⁹"]))
        cut = real.rfind(".") if "." in real else len(real)
        return real[:cut].translate(str.maketrans("0123456789", script)) + real[cut:]
    if how == "char" and real:
        at = draw(st.integers(0, len(real) - 1))
        return real[:at] + draw(any_char) + real[at + 1 :]
    if how == "cut":
        return real[: draw(st.integers(0, len(real)))]
    if how == "grow":
        return real + draw(st.one_of(small, long_values(500, 8_000)))
    if how == "case":
        return real.swapcase()
    return draw(st.sampled_from(SQL + HTML)) + real


@st.composite
def fuzzed_form(draw, names: tuple[str, ...], valid: dict[str, str] | None = None) -> Pairs:
    """Each field kept valid (when a valid form is given), fuzzed, missing or repeated,
    plus now and then a few keys nobody asked for, in any order."""
    pairs: Pairs = []
    for name in names:
        how = draw(st.sampled_from(["valid", "valid", "fuzz", "fuzz", "missing", "repeat"]))
        good = (valid or {}).get(name)
        if how == "valid" and good is None:
            how = "fuzz"
        if how == "valid":
            pairs.append((name, good))
        elif how == "fuzz":
            pairs.append((name, draw(values | mutated(good)) if good else draw(values)))
        elif how == "repeat":
            repeats = draw(st.lists(values, min_size=1, max_size=3))
            if good is not None and draw(st.booleans()):
                repeats.insert(draw(st.integers(0, len(repeats))), good)
            pairs += [(name, value) for value in repeats]
    if draw(st.integers(0, 4)) == 0:
        pairs += draw(st.lists(st.tuples(extra_keys, values), max_size=3))
    return list(draw(st.permutations(pairs)))


def form_for(names: tuple[str, ...], valid: dict[str, str] | None = None):
    return st.one_of(fuzzed_form(names), fuzzed_form(names, valid)) if valid else fuzzed_form(names)


# How the form travels: mostly a urlencoded body, sometimes multipart (with a file in
# place of a field), JSON, or plain text garbage; sometimes as an htmx request.
encodings = st.sampled_from(["urlencoded"] * 6 + ["multipart", "json", "text"])


# --- the app under test --------------------------------------------------------------------


@dataclass
class Web:
    client: TestClient
    settings: Settings
    session: str | None = None  # maria1's session id, once signed in

    @property
    def db_path(self):
        return self.settings.database

    @property
    def csrf(self) -> str:
        if "portal_csrf" not in self.client.cookies:
            self.client.get("/")
        return self.client.cookies["portal_csrf"]

    def post(
        self,
        path: str,
        pairs: Pairs,
        encoding: str = "urlencoded",
        htmx: bool = False,
        csrf: str | None = None,
    ):
        token = self.csrf if csrf is None else csrf
        headers = {"hx-request": "true"} if htmx else {}
        if encoding == "urlencoded":
            body = "&".join(
                f"{quote_plus(to_bytes(k))}={quote_plus(to_bytes(v))}"
                for k, v in [*pairs, ("_csrf_token", token)]
            )
            headers["content-type"] = "application/x-www-form-urlencoded"
            return self.client.post(path, content=body.encode(), headers=headers)
        if encoding == "multipart":
            parts = [
                (k, ("upload.txt", to_bytes(v), "text/plain") if i == 0 else (None, to_bytes(v)))
                for i, (k, v) in enumerate(
                    (re.sub(r"[^A-Za-z0-9_]", "_", k) or "x", v) for k, v in pairs
                )
            ]
            parts.append(("_csrf_token", (None, token.encode())))
            response = self.client.post(path, files=parts, headers=headers)
            # A field (not the file) whose bytes are not UTF-8: the body cannot be read,
            # the token in it neither; see answered().
            response.form_unreadable = any(
                not _is_utf8(part[1][1]) for part in parts[1:] if part[1][0] is None
            )
            return response
        headers["x-csrftoken"] = token
        if encoding == "json":
            body = json.dumps({k: [v, 1, None, {"x": v}] for k, v in pairs}).encode()
            headers["content-type"] = "application/json"
        else:
            body = b"\x00\xff" + b"&".join(to_bytes(k) + b"=" + to_bytes(v) for k, v in pairs)
            headers["content-type"] = "text/plain; charset=utf-8"
        return self.client.post(path, content=body, headers=headers)

    def get(self, path: str, params: Pairs = ()):
        query = "&".join(f"{quote_plus(to_bytes(k))}={quote_plus(to_bytes(v))}" for k, v in params)
        return self.client.get(path + ("?" + query if query else ""))

    # signed in or not, without paying for argon2 every time

    def sign_out_locally(self) -> None:
        self.client.cookies.delete("portal_session")

    def sign_in_locally(self) -> None:
        self.client.cookies.delete("portal_session")
        if self.session:
            self.client.cookies.set("portal_session", self.session, domain=HOST)

    def ensure_signed_in(self) -> None:
        """Back to maria1 signed in, whatever the last example changed (password,
        sessions, lockout, locale)."""
        self.sign_in_locally()
        self.client.cookies.delete("portal_lang")
        if self.client.get("/profile").status_code == 200:
            return
        conn = portal_db.connect_sync(self.db_path)
        conn.execute(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL"
            " WHERE username = 'maria1'",
            (HASHER.hash(normalize(GOOD_PASSWORD)),),
        )
        conn.execute("DELETE FROM login_failures")
        conn.commit()
        conn.close()
        self.sign_out_locally()
        response = self.post("/login", [("username", "maria1"), ("password", GOOD_PASSWORD)])
        assert response.status_code == 303, response.text
        self.session = self.client.cookies["portal_session"]


@pytest.fixture
def web(settings) -> Iterator[Web]:
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n"
        "0022222,0033333,B2,2026-10-01,2026-10-21,12.00\n",
    )
    conn.close()
    with TestClient(app=create_app(settings), base_url=f"http://{HOST}") as client:
        client.follow_redirects = False  # every answer is checked as it is, redirects too
        yield Web(client, settings)


@pytest.fixture
def maria(web: Web) -> Web:
    """maria1 registered (account 12345 / 67890), verified and signed in."""
    response = web.post("/register", list(registration().items()))
    assert response.status_code == 200, response.text
    execute(
        web.db_path,
        "UPDATE users SET verified_at = ? WHERE username = 'maria1'",
        (utc_in(-HOUR),),
    )
    web.ensure_signed_in()
    assert web.session
    return web


def execute(path, sql: str, params=()) -> None:
    conn = portal_db.connect_sync(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def rows(path, sql: str, params=()) -> list:
    conn = portal_db.connect_sync(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- the properties --------------------------------------------------------------------------

CLEAR_ANSWERS = (
    "There is a problem",
    'class="error-summary"',  # the summary box (sign-in failures use it without a list)
    'class="field__error"',  # an inline message
    # the friendly error pages (templates/pages/error.html and the link pages)
    "Page not found",
    "This request could not be handled",
    "What you sent is too large",
    "This form could not be sent",
    "Too many tries",
    "This verification link",
    "This link does not work",
)


def check(response, sent: Pairs | list[str] = ()) -> None:
    """The properties every answer must have, whatever was sent."""
    status = response.status_code
    body = response.text
    where = f"{response.request.method} {str(response.request.url)[:200]} -> {status}"
    assert status < 500, f"{where}\n{body[:2000]}"
    assert "Traceback" not in body, where
    for marker in RAW_MARKERS:
        assert marker not in body, f"{where}: unescaped {marker!r}"
    for item in sent:
        value = item[1] if isinstance(item, tuple) else item
        for payload in HTML:
            if payload in value:
                assert payload not in body, f"{where}: payload reflected raw: {payload!r}"
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        assert location.startswith("/") or location.startswith(f"http://{HOST}/"), where
        assert not location.startswith("//") and "\\" not in location, f"{where}: {location}"
        # Browsers drop tabs and newlines from a URL: "/\t/evil" would become "//evil".
        assert not re.search(r"[\x00-\x20\x7f]", location), f"{where}: {location!r}"
    content_type = response.headers.get("content-type", "")
    if 400 <= status < 500 and content_type.startswith("text/html"):
        assert any(words in body for words in CLEAR_ANSWERS), (
            f"{where}: no clear message\n{body[:3000]}"
        )


USERNAME = re.compile(r"[A-Za-z0-9]{3,32}")


def assert_consistent(path) -> None:
    """The database is whole, and holds only complete registrations."""
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for user in conn.execute("SELECT * FROM users").fetchall():
            name = user["username"]
            assert USERNAME.fullmatch(name), f"user row with a username no form accepts: {name!r}"
            assert user["username_key"] == name.casefold()
            assert "@" in user["email"] and "\n" not in user["email"]
            assert conn.execute(
                "SELECT 1 FROM tokens WHERE user_id = ? AND purpose = 'verify'", (user["id"],)
            ).fetchone(), f"user {name} has no verification token"
            assert conn.execute(
                "SELECT 1 FROM audit_log WHERE event = 'register' AND username = ?", (name,)
            ).fetchone(), f"user {name} was never registered"
            linked = conn.execute(
                "SELECT 1 FROM user_accounts WHERE user_id = ?", (user["id"],)
            ).fetchone()
            unlinked = conn.execute(
                "SELECT 1 FROM audit_log WHERE event = 'account_unlinked' AND username = ?",
                (name,),
            ).fetchone()
            assert linked or unlinked, f"user {name} has no service account"
        for payment in conn.execute("SELECT * FROM payments").fetchall():
            assert payment["amount_cents"] >= 100
            assert payment["method"] in ("card", "bank")
            assert conn.execute(
                "SELECT 1 FROM payment_events WHERE payment_id = ?", (payment["id"],)
            ).fetchone(), f"payment {payment['id']} has no history"
            assert (payment["status"] == "succeeded") == (
                payment["confirmation_number"] is not None
            )
    finally:
        conn.close()


# --- registration --------------------------------------------------------------------------

REGISTRATION_FORM = tuple(f for f in REGISTRATION_FIELDS if f != "delivery") + (
    "paperless",
    "printed",
)


@fuzz_settings(max_examples=80, **FUZZ)
@given(form=form_for(REGISTRATION_FORM, registration()), encoding=encodings, htmx=st.booleans())
def test_register_answers_every_form(web, form, encoding, htmx):
    response = web.post("/register", form, encoding, htmx)
    check(response, form)
    assert answered(response, 200, 400, 413, 422)
    assert_consistent(web.db_path)


check_names = st.one_of(
    st.sampled_from(REGISTRATION_FIELDS),
    st.sampled_from(["", "delivery ", "__class__", "<script>alert(1)</script>", "..", "%00"]),
    st.text(any_char, min_size=1, max_size=12),
)


@fuzz_settings(max_examples=80, **FUZZ)
@given(
    name=check_names,
    form=form_for(REGISTRATION_FORM, registration()),
    encoding=encodings,
)
def test_register_field_check_answers_every_field(web, name, form, encoding):
    response = web.post("/register/check/" + quote(to_bytes(name), safe=""), form, encoding, True)
    check(response, [*form, name])
    if name in REGISTRATION_FIELDS and encoding != "text":
        assert answered(response, 200, 413), response.text[:500]
    assert_consistent(web.db_path)


# --- sign-in, sign-out and recovery ------------------------------------------------------


@fuzz_settings(max_examples=40, **FUZZ)
@given(
    path=st.sampled_from(["/login", "/login", "/login", "/logout"]),
    form=form_for(
        ("username", "password", "remember", "next"),
        {"username": "maria1", "password": GOOD_PASSWORD, "remember": "on", "next": "/account"},
    ),
    encoding=encodings,
    htmx=st.booleans(),
)
def test_login_and_logout_answer_every_form(maria, path, form, encoding, htmx):
    maria.ensure_signed_in()
    response = maria.post(path, form, encoding, htmx)
    check(response, form)
    assert answered(response, 303, 400, 413, 422, 429)
    assert_consistent(maria.db_path)


RECOVERY = {
    "/verify/resend": ("username",),
    "/forgot-username": ("email",),
    "/forgot-password": ("identifier",),
    "/reset-password": ("token", "password", "confirm_password"),
}
RECOVERY_VALID = {
    "username": "maria1",
    "email": "maria@example.com",
    "identifier": "maria1",
    "password": "a brand new river stone path",
    "confirm_password": "a brand new river stone path",
}


@fuzz_settings(max_examples=60, **FUZZ)
@given(
    path=st.sampled_from(sorted(RECOVERY)),
    data=st.data(),
    encoding=encodings,
    real_token=st.booleans(),
)
def test_recovery_forms_answer_every_form(maria, path, data, encoding, real_token):
    valid = dict(RECOVERY_VALID)
    if real_token:  # a live reset link, as the email would carry
        code = new_code()
        execute(
            maria.db_path,
            "INSERT INTO tokens (user_id, purpose, token_hash, created_at, expires_at)"
            " SELECT id, 'reset', ?, ?, ? FROM users WHERE username = 'maria1'",
            (code_hash(code), utc_in(-HOUR), utc_in(HOUR)),
        )
        valid["token"] = code
    form = data.draw(form_for(RECOVERY[path], valid))
    maria.sign_out_locally()
    response = maria.post(path, form, encoding)
    check(response, form)
    assert answered(response, 200, 303, 400, 413, 422)
    assert_consistent(maria.db_path)
    maria.ensure_signed_in()  # a reset with a good password ends every session


# --- links and query strings ---------------------------------------------------------------

query_value = st.one_of(
    url_values,
    numberish,
    st.sampled_from(["1", "maria1", "es", "en", "/account", "/pay?account=1"]),
)
NEXT = [
    "/account",
    "//evil.example",
    "/\\evil.example",
    "/\t/evil.example",
    "https://evil.example",
    "/%0d%0aSet-Cookie:x=1",
    "/\r\nSet-Cookie:x=1",
    "javascript:alert(1)",
    "/pay?account=1",
]
QUERY_VALUES = {
    "account": st.one_of(numberish, st.just("1"), url_values),
    "lang": st.one_of(st.sampled_from(["es", "en", "ES", "es-MX", "fr"]), url_values),
    "next": st.one_of(st.sampled_from(NEXT), url_values),
}


@st.composite
def query(draw, names: tuple[str, ...]) -> Pairs:
    """Each parameter missing, once or repeated, plus now and then one nobody asked for."""
    pairs: Pairs = []
    for name in names:
        count = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
        pairs += [(name, draw(QUERY_VALUES.get(name, query_value))) for _ in range(count)]
    if draw(st.integers(0, 4)) == 0:
        pairs.append((draw(extra_keys), draw(query_value)))
    return list(draw(st.permutations(pairs)))


@fuzz_settings(max_examples=100, **FUZZ)
@given(
    target=st.sampled_from(
        [
            ("/verify", ("username", "verificationcode")),
            ("/reset-password", ("token",)),
            ("/profile/email/confirm", ("token",)),
            ("/pay", ("account",)),
            ("/pay/return", ("ref",)),
            ("/language", ("lang", "next")),
            ("/login", ("notice", "next")),
            ("/verify/resend", ("username",)),
            ("/profile", ("notice",)),
            ("/account", ("notice",)),
        ]
    ),
    data=st.data(),
    signed_in=st.booleans(),
)
def test_query_strings_are_answered(maria, target, data, signed_in):
    path, names = target
    params = data.draw(query(names))
    maria.ensure_signed_in()
    if not signed_in:
        maria.sign_out_locally()
    response = maria.get(path, params)
    check(response, params)
    assert_consistent(maria.db_path)


@fuzz_settings(max_examples=60, **FUZZ)
@given(
    prefix=st.sampled_from(
        [
            "/pay/receipt/",
            "/pay/again/",
            "/sandbox-gateway/checkout/",
            "/accounts/",
            "/dev/mailbox/",
        ]
    ),
    segment=st.one_of(url_values, numberish),
    suffix=st.sampled_from(
        ["", "", "/bills", "/bills/1", "/bills/99999999999999999999/pdf", "/usage", "/usage.csv"]
    ),
    signed_in=st.booleans(),
)
def test_path_values_are_answered(maria, prefix, segment, suffix, signed_in):
    maria.ensure_signed_in()
    if not signed_in:
        maria.sign_out_locally()
    path = prefix + quote(to_bytes(segment), safe="")
    response = maria.client.get(path + (suffix if prefix == "/accounts/" else ""))
    check(response, [segment])


NUMBER_URLS = [
    "/pay?account={}",
    "/accounts/{}/bills",
    "/accounts/1/bills/{}",
    "/accounts/1/bills/{}/pdf",
    "/accounts/{}/usage",
    "/accounts/{}/usage.csv",
    "/dev/mailbox/{}",
    "/dev/mailbox/{}/html",
]


@fuzz_settings(max_examples=50, **FUZZ)
@given(number=numberish, signed_in=st.booleans())
def test_numbers_in_urls_are_answered(maria, number, signed_in):
    maria.ensure_signed_in()
    if not signed_in:
        maria.sign_out_locally()
    for template in NUMBER_URLS:
        response = maria.client.get(template.format(quote_plus(to_bytes(number))))
        check(response, [number])
        assert answered(response, 200, 303, 400, 404)


# --- My Profile and linked accounts (signed in) --------------------------------------------

PROFILE = {
    "/profile/delivery": ("paperless", "printed"),
    "/profile/password": ("current_password", "new_password", "confirm_new_password"),
    "/profile/email": ("email_password", "new_email", "confirm_new_email"),
    "/profile/sign-out-everywhere": (),
    "/account/link": ("customer_number", "account_number"),
}
PROFILE_VALID = {
    "paperless": "yes",
    "printed": "yes",
    "current_password": GOOD_PASSWORD,
    "email_password": GOOD_PASSWORD,
    "new_password": "a brand new river stone path",
    "confirm_new_password": "a brand new river stone path",
    "new_email": "maria.new@example.com",
    "confirm_new_email": "maria.new@example.com",
    "customer_number": "22222",
    "account_number": "33333",
}


@fuzz_settings(max_examples=60, **FUZZ)
@given(
    path=st.sampled_from(sorted(PROFILE)),
    data=st.data(),
    encoding=encodings,
    htmx=st.booleans(),
)
def test_profile_and_link_forms_answer_every_form(maria, path, data, encoding, htmx):
    form = data.draw(form_for(PROFILE[path], PROFILE_VALID))
    maria.ensure_signed_in()
    response = maria.post(path, form, encoding, htmx)
    check(response, form)
    assert answered(response, 200, 303, 400, 413, 422)
    assert_consistent(maria.db_path)


@fuzz_settings(max_examples=40, **FUZZ)
@given(
    account_id=st.one_of(st.sampled_from(["1", "2", "3", "4"]), numberish, url_values),
    form=fuzzed_form(("confirm",)),
    signed_in=st.booleans(),
)
def test_unlink_answers_every_account_id(maria, account_id, form, signed_in):
    maria.ensure_signed_in()
    if not signed_in:
        maria.sign_out_locally()
    path = f"/accounts/{quote(to_bytes(account_id), safe='')}/unlink"
    response = maria.post(path, form)
    check(response, [*form, account_id])
    assert answered(response, 303, 400, 404, 405, 413)
    assert_consistent(maria.db_path)


# --- Pay My Bill --------------------------------------------------------------------------


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


def amount_form(web: Web) -> str:
    response = web.post("/pay", [("customer_number", "12345"), ("account_number", "67890")])
    assert response.status_code == 200, response.text[:500]
    return response.text


@fuzz_settings(max_examples=40, **FUZZ)
@given(
    form=form_for(
        ("customer_number", "account_number"),
        {"customer_number": "0012345", "account_number": "67890"},
    ),
    encoding=encodings,
    htmx=st.booleans(),
)
def test_pay_lookup_answers_every_form(web, form, encoding, htmx):
    response = web.post("/pay", form, encoding, htmx)
    check(response, form)
    assert answered(response, 200, 400, 413, 422)


@fuzz_settings(max_examples=60, **FUZZ)
@given(data=st.data(), encoding=encodings, signed_in=st.booleans())
def test_pay_confirm_answers_real_and_garbage_forms(maria, data, encoding, signed_in):
    maria.ensure_signed_in()
    if not signed_in:
        maria.sign_out_locally()
    page = amount_form(maria)
    token = hidden(page, "account_token")
    valid = {
        "idempotency_key": data.draw(
            st.sampled_from([hidden(page, "idempotency_key"), "k" * 20 + "-fuzz_" + "9" * 5])
        ),
        "amount": "84.10",
        "method": data.draw(st.sampled_from(["card", "bank"])),
        "receipt_email": "payer@example.com",
    }
    # The signed account token: missing, real, slightly wrong, garbage, or sent twice.
    tokens = data.draw(st.lists(st.one_of(st.just(token), mutated(token), values), max_size=2))
    form = [("account_token", t) for t in tokens] + data.draw(form_for(tuple(valid), valid))
    response = maria.post("/pay/confirm", form, encoding)
    check(response, form)
    assert answered(response, 303, 400, 413, 422)
    if response.status_code == 303:
        assert response.headers["location"].startswith("/sandbox-gateway/checkout/cs_test_")
    assert_consistent(maria.db_path)


CARD_VALID = {
    "card_number": "4242 4242 4242 4242",
    "expiry": "12/39",
    "security_code": "737",
    "name_on_card": "Maria Garcia",
    "routing_number": "021000021",
    "bank_account_number": "000123456789",
    "action": "pay",
}


@fuzz_settings(max_examples=40, **FUZZ)
@given(data=st.data(), encoding=encodings, method=st.sampled_from(["card", "bank"]))
def test_sandbox_checkout_answers_every_form(web, data, encoding, method):
    page = amount_form(web)
    start = web.post(
        "/pay/confirm",
        [
            ("account_token", hidden(page, "account_token")),
            ("idempotency_key", hidden(page, "idempotency_key")),
            ("amount", "84.10"),
            ("method", method),
        ],
    )
    assert start.status_code == 303, start.text[:500]
    checkout = start.headers["location"]
    ref = checkout.rsplit("/", 1)[1]
    if data.draw(st.integers(0, 5)) == 0:  # somebody else's or a made-up reference
        ref = quote(to_bytes(data.draw(url_values | mutated(ref))), safe="")
    check(web.client.get(f"/sandbox-gateway/checkout/{ref}"))
    form = data.draw(form_for(tuple(CARD_VALID), CARD_VALID))
    response = web.post(f"/sandbox-gateway/checkout/{ref}", form, encoding)
    check(response, form)
    assert answered(response, 303, 400, 404, 413, 422)
    if response.status_code == 303:  # back to the portal: settle, then the receipt
        back = web.client.get(response.headers["location"])
        check(back)
        if back.status_code == 303:
            check(web.client.get(back.headers["location"]))
    assert_consistent(web.db_path)


# --- the gateway's webhook ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | short_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def notifications(draw) -> dict:
    """A gateway event with one to three fields wrong, missing or of the wrong type."""
    event = {
        "type": "checkout.completed",
        "ref": "REAL",
        "status": draw(st.sampled_from(["open", "succeeded", "failed", "canceled"])),
        "amount_cents": 8410,
        "method": "card",
        "brand": "Visa",
        "last4": "4242",
    }
    odd = st.one_of(
        values,
        json_values,
        st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 10**30, -1, 0, True]),
        st.sampled_from(["\ud800", "\udcff", "8410", "8410.0", "٨٤١٠"]),
    )
    for key in draw(st.lists(st.sampled_from(sorted(event)), min_size=1, max_size=3)):
        if draw(st.integers(0, 3)) == 0:
            event.pop(key, None)
        else:
            event[key] = draw(odd)
    return event


def latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


@fuzz_settings(max_examples=100, **FUZZ)
@given(
    body_kind=st.sampled_from(["binary", "json", "event", "event", "event"]),
    data=st.data(),
    signature_kind=st.sampled_from(["none", "garbage", "shaped", "good", "good", "old", "huge"]),
)
def test_webhook_refuses_garbage_and_never_fails(web, body_kind, data, signature_kind):
    page = amount_form(web)
    start = web.post(
        "/pay/confirm",
        [
            ("account_token", hidden(page, "account_token")),
            ("idempotency_key", hidden(page, "idempotency_key")),
            ("amount", "84.10"),
            ("method", "card"),
        ],
    )
    real_ref = start.headers["location"].rsplit("/", 1)[1]
    if body_kind == "binary":
        body = data.draw(st.binary(max_size=2_000) | huge.map(to_bytes))
    elif body_kind == "json":
        body = json.dumps(data.draw(json_values)).encode()
    else:
        event = data.draw(notifications())
        if event.get("ref") == "REAL":
            event["ref"] = real_ref
        body = json.dumps(event).encode("utf-8", "surrogatepass")
    secret = web.settings.gateway_signing_secret
    if signature_kind == "good":
        signature = sign(secret, body).encode()
    elif signature_kind == "old":  # signed, but outside the five-minute window
        skew = data.draw(st.integers(301, 10**10)) * data.draw(st.sampled_from([-1, 1]))
        signature = sign(secret, body, timestamp=int(time.time()) + skew).encode()
    elif signature_kind == "huge":
        signature = b"t=" + b"9" * data.draw(st.integers(20, 5_000)) + b",v1=" + b"ab" * 32
    elif signature_kind == "shaped":
        t = data.draw(st.text(any_char, max_size=20))
        v1 = data.draw(st.text(any_char, max_size=80) | st.just("ab" * 32))
        signature = latin1(f"t={t},v1={v1}")
    elif signature_kind == "garbage":
        signature = latin1(data.draw(st.text(st.characters(max_codepoint=255), max_size=200)))
    else:
        signature = None
    headers = [(b"content-type", b"application/json")]
    if signature is not None:
        headers.append(
            (SIGNATURE_HEADER.encode(), signature.replace(b"\r", b"").replace(b"\n", b""))
        )
    payments = "SELECT * FROM payments ORDER BY id"
    before = [tuple(row) for row in rows(web.db_path, payments)]
    response = web.client.post("/payments/webhook", content=body, headers=headers)
    check(response)
    assert answered(response, 200, 400, 413)
    if signature_kind != "good":
        assert answered(response, 400, 413), "an unsigned notification was accepted"
        assert [tuple(row) for row in rows(web.db_path, payments)] == before
    assert_consistent(web.db_path)
    statuses = {row[0] for row in rows(web.db_path, "SELECT status FROM payments")}
    assert statuses <= {"pending", "succeeded", "failed", "canceled"}


# --- size limit and CSRF ----------------------------------------------------------------------

POST_PATHS = [
    "/register",
    "/register/check/username",
    "/login",
    "/logout",
    "/verify/resend",
    "/forgot-username",
    "/forgot-password",
    "/reset-password",
    "/profile/delivery",
    "/profile/password",
    "/profile/email",
    "/profile/sign-out-everywhere",
    "/account/link",
    "/accounts/1/unlink",
    "/pay",
    "/pay/confirm",
    "/sandbox-gateway/checkout/cs_test_x",
    "/payments/webhook",
]


def test_a_body_over_the_limit_is_413_on_every_form(maria):
    over = "x" * (maria.settings.max_body_bytes + 10_000)
    for path in POST_PATHS:
        maria.ensure_signed_in()
        response = maria.post(path, [("username", over)])
        assert response.status_code == 413, f"{path}: {response.status_code}"
        assert "What you sent is too large" in response.text or path == "/payments/webhook"
        check(response)
    assert_consistent(maria.db_path)


@st.composite
def wrong_tokens(draw, real: str) -> str:
    return draw(
        st.one_of(
            st.just(""),
            st.text(st.characters(max_codepoint=255), max_size=80),  # headers are latin-1
            st.text(any_char, min_size=60, max_size=140),
            mutated(real),
            huge,
        ).filter(lambda token: token != real)
    )


@fuzz_settings(max_examples=50, **FUZZ)
@given(
    path=st.sampled_from([p for p in POST_PATHS if p != "/payments/webhook"]),
    how=st.sampled_from(["field", "header", "file", "wrong first", "none"]),
    data=st.data(),
    form=fuzzed_form(("username", "password", "amount")),
)
def test_a_missing_or_wrong_csrf_token_is_refused_clearly(maria, path, how, data, form):
    maria.ensure_signed_in()
    real = maria.csrf
    token = data.draw(wrong_tokens(real))
    if how == "field":
        response = maria.post(path, form, csrf=token)
    elif how == "wrong first":  # the first of two tokens counts
        response = maria.post(path, [("_csrf_token", token), *form])
    elif how == "header":
        header = token.encode("latin-1", "replace").replace(b"\r", b"").replace(b"\n", b"")
        response = maria.client.post(
            path,
            content=b"username=x",
            headers=[
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"x-csrftoken", header.strip() or b"x"),
            ],
        )
    elif how == "file":  # an upload where the token belongs
        files = [("_csrf_token", ("token.txt", to_bytes(token), "text/plain"))]
        files += [(re.sub(r"[^A-Za-z0-9_]", "_", k) or "x", (None, to_bytes(v))) for k, v in form]
        response = maria.client.post(path, files=files)
    else:
        response = maria.client.post(
            path,
            content=b"username=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    check(response, form)
    assert answered(response, 403, 413), f"{path}: {response.status_code}"
    assert_consistent(maria.db_path)


# --- what fuzzing found, pinned -------------------------------------------------------------


def test_the_crashes_fuzzing_found_stay_fixed(maria):
    """Each of these answered 500 before its fix (see the commit that added this file)."""
    secret = maria.settings.gateway_signing_secret
    token = maria.csrf
    long_password = "correct horse battery staple river " * 3  # > 72: zxcvbn's limit

    def signed(event: dict) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        body = json.dumps(event).encode()
        return body, [(SIGNATURE_HEADER.encode(), sign(secret, body).encode())]

    def webhook(body: bytes, headers: list) -> int:
        return maria.client.post("/payments/webhook", content=body, headers=headers).status_code

    assert maria.post("/register", [("password", long_password)]).status_code == 422
    assert maria.post("/profile/password", [("new_password", long_password)]).status_code == 422
    file_token = [("_csrf_token", ("t.txt", token.encode(), "text/plain"))]
    assert maria.client.post("/register", files=file_token).status_code == 403
    assert maria.post("/register", [], csrf="١" * 70 + token).status_code == 403
    not_utf8 = maria.client.post(
        "/register", files=[("username", (None, b"\xff\xfe"))], headers={"x-csrftoken": token}
    )
    assert not_utf8.status_code == 400
    assert maria.client.get("/accounts/9223372036854775808/bills").status_code == 404
    assert maria.client.get("/accounts/1/bills/9223372036854775808").status_code == 404
    assert maria.client.get("/dev/mailbox/9223372036854775808").status_code == 404
    assert maria.client.get("/pay?account=%C2%B2").status_code == 200  # "²"
    assert maria.client.get("/pay?account=" + "9" * 30).status_code == 200
    page = amount_form(maria)
    real = hidden(page, "account_token")
    arabic = real.split(".")[0].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    confirm = maria.post("/pay/confirm", [("account_token", arabic + real[len(arabic) :])])
    assert confirm.status_code == 422
    assert webhook(b"{}", [(SIGNATURE_HEADER.encode(), b"t=" + b"9" * 400 + b",v1=ab")]) == 400
    stamp = sign(secret, b"{}").split(",")[0].encode()
    assert webhook(b"{}", [(SIGNATURE_HEADER.encode(), stamp + b",v1=\xe9")]) == 400
    event = {"ref": "cs_test_x", "status": "failed", "amount_cents": 8410}
    assert webhook(*signed({**event, "amount_cents": float("inf")})) == 400
    assert webhook(*signed({**event, "ref": "\ud800"})) == 400
    assert webhook(*signed({**event, "brand": ["Visa"]})) == 400
    assert webhook(*signed(event)) == 200  # well formed: accepted (no such payment)
    for response in [confirm, not_utf8]:
        check(response)
    assert_consistent(maria.db_path)
