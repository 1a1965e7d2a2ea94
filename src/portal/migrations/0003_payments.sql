-- Payments made in the portal. The portal never stores card data: at most the brand and
-- the last four digits. Each state change is appended to payment_events, never
-- overwritten there; payments.status is the latest state, for fast look-ups.
CREATE TABLE payments (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,       -- created when the form is shown
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    user_id INTEGER REFERENCES users(id),       -- NULL for a guest payment
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    gateway TEXT NOT NULL,
    gateway_ref TEXT UNIQUE,
    method TEXT,                                -- 'card' or 'bank'
    brand TEXT,
    last4 TEXT,
    confirmation_number TEXT UNIQUE,
    receipt_token TEXT NOT NULL UNIQUE,         -- random; the confirmation page's address
    receipt_email TEXT,
    created_at TEXT NOT NULL,
    settled_at TEXT,
    export_batch TEXT
);
CREATE INDEX payments_by_account ON payments (account_id, status, settled_at);

CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY,
    payment_id INTEGER NOT NULL REFERENCES payments(id),
    status TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT
);

-- Export batches for the billing system: one per day, frozen once written.
CREATE TABLE payment_batches (
    batch_date TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- The embedded sandbox gateway's own tables (a real processor keeps these on its side).
-- It keeps what a processor shows a merchant: brand and last four digits, never more.
CREATE TABLE sandbox_sessions (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    reference TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    method TEXT NOT NULL,
    return_url TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'succeeded', 'failed', 'canceled')),
    brand TEXT,
    last4 TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT
);

-- Access to an account that is not the resident's is recorded here as well as in the
-- audit log's event 'account_denied'.
CREATE INDEX audit_by_event ON audit_log (event, at);
