-- Billing data fed from the utility's billing system by CSV imports.
-- Numbers are kept as printed on the bill; *_key columns hold the normalized form
-- (no spaces, dashes or leading zeros) that every look-up compares.
CREATE TABLE service_accounts (
    id INTEGER PRIMARY KEY,
    customer_number TEXT NOT NULL,
    account_number TEXT NOT NULL,
    customer_key TEXT NOT NULL,
    account_key TEXT NOT NULL,
    name TEXT NOT NULL,
    service_address TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'closed')),
    updated_at TEXT NOT NULL,
    UNIQUE (customer_key, account_key)
);

CREATE TABLE bills (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    bill_number TEXT NOT NULL,
    bill_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    amount_due_cents INTEGER NOT NULL,
    period_start TEXT,
    period_end TEXT,
    previous_balance_cents INTEGER,
    payments_cents INTEGER,
    current_charges_cents INTEGER,
    consumption REAL,
    imported_at TEXT NOT NULL,
    UNIQUE (account_id, bill_number)
);
CREATE INDEX bills_by_account_date ON bills (account_id, bill_date DESC);

CREATE TABLE usage_reads (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    read_date TEXT NOT NULL,
    consumption REAL NOT NULL,
    unit TEXT NOT NULL CHECK (unit IN ('HCF', 'gallons')),
    imported_at TEXT NOT NULL,
    UNIQUE (account_id, read_date)
);
