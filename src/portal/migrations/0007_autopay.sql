-- Saved payment methods, AutoPay, scheduled one-time payments and the runner's charges.

-- A card or bank account saved at the gateway. The portal keeps the gateway's token and
-- what a receipt shows (type, brand, last four, expiry), never a card or account number.
CREATE TABLE saved_methods (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    gateway TEXT NOT NULL,
    customer TEXT NOT NULL DEFAULT '',          -- the gateway's customer id (Stripe cus_…)
    token TEXT NOT NULL,                        -- the gateway's saved-method id (pm_…)
    method TEXT NOT NULL CHECK (method IN ('card', 'bank')),
    brand TEXT,
    last4 TEXT,
    exp_month INTEGER,
    exp_year INTEGER,
    nickname TEXT NOT NULL DEFAULT '',
    is_default INTEGER NOT NULL DEFAULT 0,
    setup_ref TEXT NOT NULL UNIQUE,             -- the save-mode session it came from (once)
    created_at TEXT NOT NULL,
    removed_at TEXT,
    UNIQUE (gateway, token)
);
CREATE INDEX saved_methods_by_user ON saved_methods (user_id, removed_at);

-- A save-mode session the portal started: whose it is, and the nickname asked for.
CREATE TABLE method_setups (
    ref TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    idempotency_key TEXT NOT NULL UNIQUE,
    customer TEXT NOT NULL DEFAULT '',
    nickname TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

-- AutoPay, one row per enrolled service account. Cancelling deletes the row (the audit
-- log keeps the history); the method is read when a charge starts, so a change takes
-- effect for every charge not yet started.
CREATE TABLE autopay (
    account_id INTEGER PRIMARY KEY REFERENCES service_accounts(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    method_id INTEGER NOT NULL REFERENCES saved_methods(id),
    max_cents INTEGER CHECK (max_cents IS NULL OR max_cents > 0),
    enrolled_at TEXT NOT NULL
);

-- Money the runner will move: an AutoPay charge for a bill, or a one-time payment the
-- resident scheduled. run_on is a date in the utility's time zone.
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('autopay', 'scheduled')),
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    bill_id INTEGER REFERENCES bills(id),       -- autopay: the bill it pays
    method_id INTEGER REFERENCES saved_methods(id), -- scheduled: the method chosen
    amount_cents INTEGER,                       -- scheduled: fixed; autopay: set when charged
    run_on TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,         -- 2 after one failure (the next-day retry)
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'charging', 'succeeded', 'failed',
        'skipped', 'canceled', 'nothing_due', 'over_max')),
    reminded_at TEXT,
    lease_until TEXT,                           -- a runner is charging it until then
    form_key TEXT UNIQUE,                       -- scheduled: the form's key (sent twice, one row)
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX schedules_one_per_bill ON schedules (bill_id) WHERE kind = 'autopay';
CREATE INDEX schedules_due ON schedules (status, run_on);
CREATE INDEX schedules_by_account ON schedules (account_id, run_on);

-- A charge made by the runner is a payment like any other (exported, counted as paid),
-- with its origin and the schedule and attempt it belongs to: one payment per attempt,
-- written before the gateway is called, with the gateway idempotency key as its key.
ALTER TABLE payments ADD COLUMN origin TEXT;      -- NULL (a form), 'autopay', 'scheduled'
ALTER TABLE payments ADD COLUMN schedule_id INTEGER REFERENCES schedules(id);
ALTER TABLE payments ADD COLUMN attempt INTEGER;
CREATE UNIQUE INDEX payments_one_per_attempt ON payments (schedule_id, attempt)
    WHERE schedule_id IS NOT NULL;

-- The sandbox gateway's saved methods and off-session charges (a real processor keeps
-- these on its side). One charge per idempotency key, as at a real processor.
ALTER TABLE sandbox_sessions ADD COLUMN mode TEXT NOT NULL DEFAULT 'payment';
ALTER TABLE sandbox_sessions ADD COLUMN saved_token TEXT;
CREATE TABLE sandbox_methods (
    token TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    method TEXT NOT NULL,
    brand TEXT,
    last4 TEXT,
    exp_month INTEGER,
    exp_year INTEGER,
    declines INTEGER NOT NULL DEFAULT 0,        -- saved, but every charge is declined
    created_at TEXT NOT NULL
);
CREATE TABLE sandbox_charges (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Email notices a resident opted into (My Profile): 'due_soon', 'past_due', 'leak'.
CREATE TABLE notice_prefs (
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL CHECK (kind IN ('due_soon', 'past_due', 'leak')),
    PRIMARY KEY (user_id, kind)
);
-- Each notice once: per account, kind and what it is about (a bill id, a read date).
CREATE TABLE notices_sent (
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    kind TEXT NOT NULL,
    about TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, about)
);
-- An email that can be stopped with one click carries its signed link here; the sender
-- turns it into List-Unsubscribe and List-Unsubscribe-Post headers.
ALTER TABLE outbox ADD COLUMN unsubscribe_url TEXT;
