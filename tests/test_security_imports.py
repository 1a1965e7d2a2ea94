"""The bill import refuses control characters, and download file names are safe
(issue 11, "also noticed")."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from portal import db as portal_db
from portal.billing.importer import ImportFailed, import_text
from portal.security.filenames import attachment, safe_filename

from resident_steps import GOOD_PASSWORD, query, registration
from sample_data import load_billing

BILLS_HEADER = "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"


def import_bills(path, text: str):
    conn = portal_db.connect_sync(path)
    try:
        return import_text(conn, "bills", BILLS_HEADER + text)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('"B1\r\nX"', "CR LF"),
        ('"B1\nX"', "LF"),
        ("B1\x00", "NUL"),
        ("B1\tX", "tab"),
        ("B1\u2028X", "line separator"),
        ("B\u202e1", "right-to-left override"),
        ("B1\x85", "C1 next line"),
    ],
)
def test_a_control_character_in_a_bill_number_is_refused_with_its_line(settings, cell, shown):
    load_billing(settings.database)
    good = "0012345,0067890,B0,2026-10-01,2026-10-21,84.10\n"
    bad = f"0012345,0067890,{cell},2026-11-01,2026-11-21,90.00\n"
    with pytest.raises(ImportFailed) as failed:
        import_bills(settings.database, good + bad)
    [error] = failed.value.errors
    assert error.line >= 3, shown
    assert str(error).endswith(
        "bill_number contains a line break or another control character; remove it"
    )
    assert query(settings.database, "SELECT count(*) FROM bills")[0][0] == 0  # nothing


def test_every_text_field_of_every_file_is_checked(settings):
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    accounts = (
        "customer_number,account_number,name,service_address,status\n"
        '0012345,0067890,"Maria\rGarcia",123 Euclid Ave,active\n'
        '0022222,0033333,Wei Kim,"22 Holt Blvd\nOntario",active\n'
        "0044444,0055555,Ana,1 Main St,active\x0b\n"
        "00\x1b66666,0077777,Bo,2 Main St,active\n"
    )
    with pytest.raises(ImportFailed) as failed:
        import_text(conn, "accounts", accounts)
    conn.close()
    reasons = [str(e) for e in failed.value.errors]
    assert [r.split(": ", 1)[1].split(" ")[0] for r in reasons] == [
        "name",
        "service_address",
        "status",
        "customer_number",
    ]
    # rows 1 and 2 each span two lines (a quoted line break): each is told by its first
    assert [r.split(":")[0] for r in reasons] == ["line 2", "line 4", "line 6", "line 7"]
    # one reason per field, not one per time the field is read
    assert len(reasons) == 4


def test_plain_text_still_imports(settings):
    load_billing(settings.database)
    result = import_bills(
        settings.database, "0012345,0067890, B-2026/11 ,2026-11-01,2026-11-21,90.00\n"
    )
    assert result.changed == 1


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("bill-B1.pdf", "bill-B1.pdf"),
        ("bill-B1\r\nSet-Cookie: x=1.pdf", "bill-B1-Set-Cookie-x-1.pdf"),
        ('bill-"quoted";.pdf', "bill-quoted.pdf"),
        ("bill-../../etc/passwd.pdf", "bill-etc-passwd.pdf"),
        ("usage-0067890.csv", "usage-0067890.csv"),
        ("bill-Año 2026.pdf", "bill-A-o-2026.pdf"),
        ("....pdf", "download.pdf"),
        ("x" * 500 + ".pdf", "x" * 96 + ".pdf"),
    ],
)
def test_safe_filename(name, safe):
    assert safe_filename(name) == safe
    assert attachment(name) == f'attachment; filename="{safe}"'


def test_a_bill_with_a_line_break_in_its_number_downloads_over_a_real_server(settings, live_server):
    """Imported before this check existed: the PDF download used to drop the connection."""
    load_billing(settings.database)
    import_bills(settings.database, "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n")
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE bills SET bill_number = 'B1\r\nX-Evil: 1'")
    conn.commit()
    conn.close()
    with httpx.Client(base_url=live_server.url) as client:
        client.get("/")
        token = client.cookies["portal_csrf"]
        assert client.post("/register", data={**registration(), "_csrf_token": token}).is_success
        conn = sqlite3.connect(settings.database)
        conn.execute("UPDATE users SET verified_at = '2026-01-01T00:00:00.000000Z'")
        conn.commit()
        conn.close()
        signed_in = client.post(
            "/login",
            data={"username": "maria1", "password": GOOD_PASSWORD, "_csrf_token": token},
        )
        assert signed_in.status_code == 303 and "portal_session" in client.cookies
        [(account_id, bill_id)] = query(settings.database, "SELECT account_id, id FROM bills")
        pdf = client.get(f"/accounts/{account_id}/bills/{bill_id}/pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-disposition"] == 'attachment; filename="bill-B1-X-Evil-1.pdf"'
        assert "x-evil" not in pdf.headers
