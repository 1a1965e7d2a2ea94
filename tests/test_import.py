"""CSV imports from the billing system, through the importer and the `portal` command.

Every test uses a real SQLite file. The rules under test: a good file imports in one
transaction; importing it again changes nothing; a changed row updates; a file with any
bad row imports nothing and every bad row is reported with its line number and reason.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from portal import db as portal_db
from portal.billing.importer import ImportFailed, import_file, import_text
from portal.billing.numbers import number_key
from portal.cli import main
from portal.settings import Settings

TABLES = ("service_accounts", "bills", "usage_reads")

ACCOUNTS_HEADER = "customer_number,account_number,name,service_address,status\n"
ACCOUNTS = ACCOUNTS_HEADER + (
    "0012345,0067890,Maria Garcia,101 Euclid Ave,active\n"
    "22222,33333,Wei Kim,22 Holt Blvd,active\n"
    "44444,55555,Ana Lopez,9 Grove Ave,closed\n"
)
BILLS_HEADER = (
    "customer_number,account_number,bill_number,bill_date,due_date,amount_due,"
    "period_start,period_end,previous_balance,payments,current_charges,consumption\n"
)
BILLS = BILLS_HEADER + (
    "12345,67890,B-1,2026-01-31,2026-02-21,123.45,2026-01-01,2026-01-31,10.00,10,123.45,14.5\n"
    "12345,67890,B-2,2026-02-28,2026-03-21,7,,,,,,\n"
    "22222,33333,B-3,2026-02-28,2026-03-21,1.5,,,,,,\n"
)
BILLS_SHORT_HEADER = "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
USAGE_HEADER = "customer_number,account_number,read_date,consumption,unit\n"
USAGE = USAGE_HEADER + (
    "12345,67890,2026-01-31,14.5,HCF\n"
    "12345,67890,2026-02-28,12,hcf\n"
    "22222,33333,2026-02-28,7480,gallons\n"
)


# --- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The `portal` command pointed at this test's database, in development mode."""
    for name in ("PORTAL_ENV", "PORTAL_SECRET_KEY", "PORTAL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    return settings


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every column of every row of the billing tables, timestamps included."""
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
        for table in TABLES
    }


def count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def bad_rows(conn: sqlite3.Connection, kind: str, text: str) -> list[str]:
    """Import text that must fail; return the reported rows and check nothing changed."""
    before = snapshot(conn)
    with pytest.raises(ImportFailed) as failed:
        import_text(conn, kind, text)
    assert not conn.in_transaction
    assert snapshot(conn) == before, "a file with a bad row must import nothing"
    return [str(error) for error in failed.value.errors]


@pytest.fixture
def loaded(sync_db: sqlite3.Connection) -> sqlite3.Connection:
    """A database with the three sample accounts (and nothing else)."""
    import_text(sync_db, "accounts", ACCOUNTS)
    return sync_db


# --- good files ---------------------------------------------------------------------


def test_good_files_import_through_the_cli(cli_env, sync_db, tmp_path, capsys):
    for kind, text in (("accounts", ACCOUNTS), ("bills", BILLS), ("usage", USAGE)):
        code, out, err = run(capsys, "import", kind, str(write(tmp_path, f"{kind}.csv", text)))
        assert code == 0, err
        assert f"{kind}: 3 rows read, 3 added or updated, 0 unchanged" in out
        assert err == ""

    accounts = sync_db.execute(
        "SELECT customer_number, account_number, customer_key, account_key, name,"
        " service_address, status FROM service_accounts ORDER BY id"
    ).fetchall()
    assert [tuple(a) for a in accounts] == [
        ("0012345", "0067890", "12345", "67890", "Maria Garcia", "101 Euclid Ave", "active"),
        ("22222", "33333", "22222", "33333", "Wei Kim", "22 Holt Blvd", "active"),
        ("44444", "55555", "44444", "55555", "Ana Lopez", "9 Grove Ave", "closed"),
    ]
    bills = sync_db.execute(
        "SELECT a.customer_number, b.bill_number, b.bill_date, b.due_date, b.amount_due_cents,"
        " b.period_start, b.period_end, b.previous_balance_cents, b.payments_cents,"
        " b.current_charges_cents, b.consumption"
        " FROM bills b JOIN service_accounts a ON a.id = b.account_id ORDER BY b.id"
    ).fetchall()
    assert [tuple(b) for b in bills] == [
        ("0012345", "B-1", "2026-01-31", "2026-02-21", 12345, "2026-01-01", "2026-01-31")
        + (1000, 1000, 12345, 14.5),
        ("0012345", "B-2", "2026-02-28", "2026-03-21", 700, None, None, None, None, None, None),
        ("22222", "B-3", "2026-02-28", "2026-03-21", 150, None, None, None, None, None, None),
    ]
    usage = sync_db.execute(
        "SELECT a.account_number, u.read_date, u.consumption, u.unit"
        " FROM usage_reads u JOIN service_accounts a ON a.id = u.account_id ORDER BY u.id"
    ).fetchall()
    assert [tuple(u) for u in usage] == [
        ("0067890", "2026-01-31", 14.5, "HCF"),
        ("0067890", "2026-02-28", 12.0, "HCF"),
        ("33333", "2026-02-28", 7480.0, "gallons"),
    ]


@pytest.mark.parametrize(
    ("amount", "cents"),
    [("123.45", 12345), ("7", 700), ("1.5", 150), ("0.05", 5), ("-12.30", -1230), ("0", 0)],
)
def test_amounts_are_stored_as_integer_cents(loaded, amount, cents):
    import_text(
        loaded, "bills", BILLS_SHORT_HEADER + f"12345,67890,B-9,2026-01-31,2026-02-21,{amount}\n"
    )
    stored = loaded.execute("SELECT amount_due_cents, typeof(amount_due_cents) FROM bills")
    assert tuple(stored.fetchone()) == (cents, "integer")


@pytest.mark.parametrize(("kind", "text"), [("accounts", ACCOUNTS), ("bills", BILLS)])
def test_importing_the_same_file_twice_changes_nothing(
    cli_env, sync_db, tmp_path, capsys, kind, text
):
    if kind != "accounts":
        import_text(sync_db, "accounts", ACCOUNTS)
    path = write(tmp_path, f"{kind}.csv", text)
    first = import_file(sync_db, kind, path)
    assert (first.rows, first.changed) == (3, 3)
    before = snapshot(sync_db)

    again = import_file(sync_db, kind, path)
    assert (again.rows, again.changed) == (3, 0)
    assert again.new_bills == []
    code, out, _ = run(capsys, "import", kind, str(path))
    assert code == 0
    assert f"{kind}: 3 rows read, 0 added or updated, 3 unchanged" in out
    assert snapshot(sync_db) == before


def test_importing_the_same_usage_twice_changes_nothing(loaded, tmp_path):
    path = write(tmp_path, "usage.csv", USAGE)
    assert import_file(loaded, "usage", path).changed == 3
    before = snapshot(loaded)
    assert import_file(loaded, "usage", path).changed == 0
    assert snapshot(loaded) == before


def test_a_changed_row_updates_only_that_row(loaded):
    import_text(loaded, "bills", BILLS)
    import_text(loaded, "usage", USAGE)
    before = snapshot(loaded)

    result = import_text(loaded, "accounts", ACCOUNTS.replace("Wei Kim", "Wei Kim-Park"))
    assert (result.rows, result.changed) == (3, 1)
    result = import_text(loaded, "bills", BILLS.replace(",7,", ",8.25,"))
    assert (result.rows, result.changed) == (3, 1)
    assert result.new_bills == []  # an updated bill is not a new bill
    result = import_text(loaded, "usage", USAGE.replace("7480,gallons", "7500,gallons"))
    assert (result.rows, result.changed) == (3, 1)

    after = snapshot(loaded)
    for table in TABLES:
        assert len(after[table]) == len(before[table]) == 3
        differing = [
            i for i, (a, b) in enumerate(zip(before[table], after[table], strict=True)) if a != b
        ]
        assert len(differing) == 1, table
    assert (
        loaded.execute("SELECT name FROM service_accounts WHERE account_key = '33333'").fetchone()[
            0
        ]
        == "Wei Kim-Park"
    )
    assert (
        loaded.execute("SELECT amount_due_cents FROM bills WHERE bill_number = 'B-2'").fetchone()[0]
        == 825
    )
    assert (
        loaded.execute("SELECT consumption FROM usage_reads WHERE unit = 'gallons'").fetchone()[0]
        == 7500
    )


def test_new_bills_are_reported_by_id(loaded):
    result = import_text(loaded, "bills", BILLS)
    ids = [r[0] for r in loaded.execute("SELECT id FROM bills ORDER BY id")]
    assert result.new_bills == ids and len(ids) == 3


def test_extra_columns_are_ignored(sync_db):
    text = (
        "route,customer_number,account_number,name,service_address,status,meter_size\n"
        "R7,12345,67890,Maria Garcia,101 Euclid Ave,active,5/8\n"
    )
    assert import_text(sync_db, "accounts", text).changed == 1
    row = sync_db.execute("SELECT * FROM service_accounts").fetchone()
    assert (row["name"], row["status"]) == ("Maria Garcia", "active")


def test_header_names_ignore_case_and_column_order(sync_db):
    text = "STATUS,Name,Service_Address,Account_Number,Customer_Number\nclosed,A B,1 Main St,2,1\n"
    import_text(sync_db, "accounts", text)
    row = sync_db.execute(
        "SELECT customer_key, account_key, status FROM service_accounts"
    ).fetchone()
    assert tuple(row) == ("1", "2", "closed")


def test_a_utf8_bom_header_works(cli_env, sync_db, tmp_path, capsys):
    path = write(tmp_path, "accounts.csv", "\ufeff" + ACCOUNTS.replace("Maria", "José"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    code, out, err = run(capsys, "import", "accounts", str(path))
    assert code == 0, err
    assert count(sync_db, "service_accounts") == 3
    assert (
        sync_db.execute(
            "SELECT name FROM service_accounts WHERE customer_key = '12345'"
        ).fetchone()[0]
        == "José Garcia"
    )


def test_crlf_line_endings_and_quoted_commas(sync_db):
    text = (
        ACCOUNTS_HEADER.replace("\n", "\r\n")
        + '1,2,"Garcia, Maria","101 Euclid Ave, Ontario",active\r\n'
    )
    import_text(sync_db, "accounts", text)
    row = sync_db.execute("SELECT name, service_address FROM service_accounts").fetchone()
    assert tuple(row) == ("Garcia, Maria", "101 Euclid Ave, Ontario")


# --- numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["0012345", "12345", "12-345", "12 345", " 0012-345 "])
def test_number_key_matches_the_way_residents_type(typed):
    assert number_key(typed) == "12345"


@pytest.mark.parametrize("typed", ["", "  ", "12.345", "12/345", "№12"])
def test_number_key_refuses_what_cannot_be_a_number(typed):
    assert number_key(typed) is None


def test_bills_and_usage_find_accounts_however_the_numbers_are_written(loaded):
    # The account was imported as 0012345 / 0067890.
    import_text(loaded, "bills", BILLS_SHORT_HEADER + "12-345,67 890,B-7,2026-01-31,2026-02-21,5\n")
    import_text(loaded, "usage", USAGE_HEADER + "00012345,67-890,2026-01-31,3,HCF\n")
    account_id = loaded.execute(
        "SELECT id FROM service_accounts WHERE customer_key = '12345'"
    ).fetchone()[0]
    assert loaded.execute("SELECT account_id FROM bills").fetchone()[0] == account_id
    assert loaded.execute("SELECT account_id FROM usage_reads").fetchone()[0] == account_id


def test_reimporting_an_account_written_differently_updates_the_same_row(loaded):
    text = ACCOUNTS_HEADER + "12-345,67890,Maria Garcia,101 Euclid Ave,active\n"
    result = import_text(loaded, "accounts", text)
    assert result.changed == 1  # the number as printed changed, the account did not
    assert count(loaded, "service_accounts") == 3
    row = loaded.execute(
        "SELECT customer_number FROM service_accounts WHERE customer_key = '12345'"
    )
    assert row.fetchone()[0] == "12-345"


# --- bad files: nothing is imported, every bad row is reported ----------------------

GOOD_ACCOUNT = "90001,90002,Good Row,1 Main St,active\n"
GOOD_BILL = "22222,33333,B-100,2026-01-31,2026-02-21,10.00\n"
GOOD_USAGE = "22222,33333,2026-01-31,5,HCF\n"

BAD = [
    # (id, kind, file text, expected "line N: reason" fragments)
    (
        "too few columns",
        "accounts",
        ACCOUNTS_HEADER + GOOD_ACCOUNT + "90003,90004,Short Row,active\n",
        ["line 3: expected 5 columns, found 4"],
    ),
    (
        "too many columns",
        "accounts",
        ACCOUNTS_HEADER + GOOD_ACCOUNT + "90003,90004,Long,Row,1 Main St,active\n",
        ["line 3: expected 5 columns, found 6"],
    ),
    (
        "date that does not exist",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "22222,33333,B-101,2026-02-30,2026-03-21,1.00\n",
        ["line 3: bill_date '2026-02-30' is not a date like 2026-01-31"],
    ),
    (
        "US-style date",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "22222,33333,B-101,2026-02-28,03/21/2026,1.00\n",
        ["line 3: due_date '03/21/2026' is not a date like 2026-01-31"],
    ),
    (
        "bad usage date",
        "usage",
        USAGE_HEADER + GOOD_USAGE + "22222,33333,2026-13-01,5,HCF\n",
        ["line 3: read_date '2026-13-01' is not a date like 2026-01-31"],
    ),
    (
        "due date before bill date",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "22222,33333,B-101,2026-02-28,2026-02-01,1.00\n",
        ["line 3: due_date is before bill_date"],
    ),
    (
        "amount with a dollar sign",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "22222,33333,B-101,2026-02-28,2026-03-21,$12.00\n",
        ["line 3: amount_due '$12.00' is not an amount like 123.45"],
    ),
    (
        "amount with three decimals",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "22222,33333,B-101,2026-02-28,2026-03-21,12.345\n",
        ["line 3: amount_due '12.345' is not an amount like 123.45"],
    ),
    (
        "amount with a thousands comma",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + '22222,33333,B-101,2026-02-28,2026-03-21,"1,234.00"\n',
        ["line 3: amount_due '1,234.00' is not an amount like 123.45"],
    ),
    (
        "bad optional amount",
        "bills",
        BILLS_HEADER + "22222,33333,B-101,2026-02-28,2026-03-21,1.00,,,ten,,,\n",
        ["line 2: previous_balance 'ten' is not an amount like 123.45"],
    ),
    (
        "bill for an unknown account",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + "77777,88888,B-101,2026-02-28,2026-03-21,1.00\n",
        ["line 3: unknown account (import the accounts file first)"],
    ),
    (
        "usage for an unknown account",
        "usage",
        USAGE_HEADER + GOOD_USAGE + "22222,99999,2026-01-31,5,HCF\n",
        ["line 3: unknown account (import the accounts file first)"],
    ),
    (
        "missing header column",
        "accounts",
        "customer_number,account_number,name,service_address\n90001,90002,A,B\n",
        ["line 1: missing header column(s): status"],
    ),
    (
        "missing bill header columns",
        "bills",
        "customer_number,account_number,bill_number,amount_due\n22222,33333,B-1,1.00\n",
        ["line 1: missing header column(s): bill_date, due_date"],
    ),
    ("empty file", "accounts", "", ["line 1: the file is empty; expected a header row"]),
    ("only blank lines", "usage", "\n\n", ["line 1: the file is empty; expected a header row"]),
    (
        "status not active or closed",
        "accounts",
        ACCOUNTS_HEADER + GOOD_ACCOUNT + "90003,90004,A,B,suspended\n",
        ["line 3: status 'suspended' must be active or closed"],
    ),
    (
        "unit not HCF or gallons",
        "usage",
        USAGE_HEADER + GOOD_USAGE + "22222,33333,2026-02-28,5,litres\n",
        ["line 3: unit 'litres' must be HCF or gallons"],
    ),
    (
        "negative consumption",
        "usage",
        USAGE_HEADER + GOOD_USAGE + "22222,33333,2026-02-28,-5,HCF\n",
        ["line 3: consumption '-5' is not a non-negative number"],
    ),
    (
        "same account twice, written differently",
        "accounts",
        ACCOUNTS_HEADER + "0090001,90002,A,B,active\n" + "90-001,090002,A,B,closed\n",
        ["line 3: same account as line 2"],
    ),
    (
        "same bill twice",
        "bills",
        BILLS_SHORT_HEADER + GOOD_BILL + GOOD_BILL.replace("10.00", "11.00"),
        ["line 3: same bill as line 2"],
    ),
    (
        "same read twice",
        "usage",
        USAGE_HEADER + GOOD_USAGE + GOOD_USAGE.replace(",5,", ",6,"),
        ["line 3: same read as line 2"],
    ),
    (
        "empty required field",
        "accounts",
        ACCOUNTS_HEADER + GOOD_ACCOUNT + ",90004,A,B,active\n",
        ["line 3: customer_number is empty"],
    ),
    (
        "number with letters and symbols",
        "accounts",
        ACCOUNTS_HEADER + GOOD_ACCOUNT + "90/003,90004,A,B,active\n",
        ["line 3: customer_number '90/003' is not a number"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_row_imports_nothing_and_is_reported(loaded, kind, text, expected):
    errors = bad_rows(loaded, kind, text)
    assert errors == expected


def test_an_empty_field_is_reported_once(loaded):
    errors = bad_rows(loaded, "accounts", ACCOUNTS_HEADER + ",90004,A,B,active\n")
    assert errors == ["line 2: customer_number is empty"]


def test_every_bad_row_is_reported_with_its_line(loaded):
    text = (
        BILLS_SHORT_HEADER  # line 1
        + GOOD_BILL  # line 2
        + "22222,33333,B-101,2026-02-30,2026-03-21,1.00\n"  # 3: bad date
        + GOOD_BILL.replace("B-100", "B-102")  # 4
        + "22222,33333,B-103,2026-02-28,2026-03-21,abc\n"  # 5: bad amount
        + "\n"  # 6: blank lines are skipped
        + "77777,88888,B-104,2026-02-28,2026-03-21,1.00\n"  # 7: unknown account
        + "22222,33333,B-105,2026-02-28\n"  # 8: wrong column count
        + "22222,33333,B-106,31/01/2026,2026-03-21,x\n"  # 9: two reasons
    )
    errors = bad_rows(loaded, "bills", text)
    assert errors == [
        "line 3: bill_date '2026-02-30' is not a date like 2026-01-31",
        "line 5: amount_due 'abc' is not an amount like 123.45",
        "line 7: unknown account (import the accounts file first)",
        "line 8: expected 6 columns, found 4",
        "line 9: bill_date '31/01/2026' is not a date like 2026-01-31; "
        "amount_due 'x' is not an amount like 123.45",
    ]
    assert count(loaded, "bills") == 0


def test_a_bad_row_leaves_earlier_imports_untouched(loaded):
    import_text(loaded, "bills", BILLS)
    before = snapshot(loaded)
    # The good rows of this file would change two bills; the bad one stops them all.
    changed = BILLS.replace("123.45,2026", "999.99,2026").replace(",1.5,", ",2.5,")
    errors = bad_rows(loaded, "bills", changed + "12345,67890,B-9,2026-02-28,2026-03-21,?,,,,,,\n")
    assert errors == ["line 5: amount_due '?' is not an amount like 123.45"]
    assert snapshot(loaded) == before


def test_cli_reports_bad_rows_on_stderr_and_exits_non_zero(cli_env, sync_db, tmp_path, capsys):
    path = write(
        tmp_path,
        "accounts.csv",
        ACCOUNTS_HEADER
        + GOOD_ACCOUNT
        + "90003,90004,A,B,gone\n"
        + GOOD_ACCOUNT.replace("90001", "90005")
        + "90007,90008,A,active\n",
    )
    code, out, err = run(capsys, "import", "accounts", str(path))
    assert code != 0
    assert out == ""
    assert "nothing was imported" in err
    lines = [line.strip() for line in err.splitlines()]
    assert "line 3: status 'gone' must be active or closed" in lines
    assert "line 5: expected 5 columns, found 4" in lines
    assert count(sync_db, "service_accounts") == 0


def test_cli_refuses_a_file_that_is_not_utf8(cli_env, sync_db, tmp_path, capsys):
    path = write(tmp_path, "accounts.csv", ACCOUNTS.replace("Maria", "María"), encoding="latin-1")
    code, out, err = run(capsys, "import", "accounts", str(path))
    assert code != 0
    assert "not UTF-8" in err
    assert count(sync_db, "service_accounts") == 0


def test_cli_refuses_a_missing_file(cli_env, tmp_path, capsys):
    code, _, err = run(capsys, "import", "accounts", str(tmp_path / "nope.csv"))
    assert code == 2
    assert "is not a file" in err


def test_cli_refuses_an_unknown_kind(cli_env, tmp_path, capsys):
    path = write(tmp_path, "payments.csv", ACCOUNTS)
    with pytest.raises(SystemExit) as exited:
        main(["import", "payments", str(path)])
    assert exited.value.code == 2


# --- portal demo and portal db upgrade -----------------------------------------------


def test_portal_demo_is_idempotent_and_prints_active_accounts(cli_env, sync_db, capsys):
    code, first_out, _ = run(capsys, "demo")
    assert code == 0
    before = snapshot(sync_db)
    assert count(sync_db, "service_accounts") >= 3
    assert count(sync_db, "bills") > 0 and count(sync_db, "usage_reads") > 0

    code, second_out, _ = run(capsys, "demo")
    assert code == 0
    assert snapshot(sync_db) == before
    assert second_out == first_out

    pairs = [line.split() for line in first_out.splitlines() if "Customer Number" in line]
    assert len(pairs) == 3
    for words in pairs:
        customer = words[words.index("Customer") + 2]
        account = words[words.index("Account") + 2]
        row = sync_db.execute(
            "SELECT status FROM service_accounts WHERE customer_key = ? AND account_key = ?",
            (number_key(customer), number_key(account)),
        ).fetchone()
        assert row is not None, (customer, account)
        assert row["status"] == "active"


def test_portal_db_upgrade_applies_migrations_then_is_up_to_date(cli_env, capsys):
    names = [name for _, name, _ in portal_db.migrations()]
    assert names[0] == "0001_billing"

    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    assert out.strip() == f"{cli_env.database}: applied {', '.join(names)}"

    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0
    assert out.strip() == f"{cli_env.database}: up to date"

    conn = portal_db.connect_sync(cli_env.database)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [v for v, _, _ in portal_db.migrations()]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_readme_csv_examples_import(sync_db):
    from portal.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    examples = dict(re.findall(r"### (\w+)\n.*?```csv\n(.*?)```", readme, flags=re.S))
    assert list(examples) == ["accounts", "bills", "usage"]
    for kind, text in examples.items():
        result = import_text(sync_db, kind, text)
        assert result.rows == result.changed >= 2, kind
