-- The Customer Services console: staff accounts (never a resident with a flag), their
-- second factor, sessions, sign-in failures, the actions they take and account notes.
CREATE TABLE staff (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,          -- lower-cased
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('csr', 'supervisor')),
    password_hash TEXT,                         -- NULL until enrolment
    totp_secret TEXT NOT NULL,                  -- base32; shown only on the enrolment page
    totp_last_step INTEGER,                     -- a code's time step is accepted once
    enrol_hash TEXT UNIQUE,                     -- SHA-256 of the one-time enrolment code
    enrol_expires_at TEXT,
    created_at TEXT NOT NULL,
    enrolled_at TEXT,
    disabled_at TEXT
);

-- Ten single-use recovery codes per staff member, only their hashes.
CREATE TABLE staff_recovery_codes (
    id INTEGER PRIMARY KEY,
    staff_id INTEGER NOT NULL REFERENCES staff(id),
    code_hash TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX staff_recovery_codes_by_staff ON staff_recovery_codes (staff_id);

-- Staff sessions: a separate cookie; the table keeps the id's hash.
CREATE TABLE staff_sessions (
    id_hash TEXT PRIMARY KEY,
    staff_id INTEGER NOT NULL REFERENCES staff(id),
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX staff_sessions_by_staff ON staff_sessions (staff_id);

-- Failed staff sign-ins, counted per username and per client address.
CREATE TABLE staff_login_failures (
    id INTEGER PRIMARY KEY,
    username_key TEXT NOT NULL,
    client TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX staff_login_failures_by_user ON staff_login_failures (username_key, at);
CREATE INDEX staff_login_failures_by_client ON staff_login_failures (client, at);

-- What staff did for residents, with the reason they gave (also in audit_log).
CREATE TABLE staff_actions (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    staff_id INTEGER NOT NULL REFERENCES staff(id),
    staff_username TEXT NOT NULL,
    action TEXT NOT NULL,
    account_id INTEGER REFERENCES service_accounts(id),
    user_id INTEGER REFERENCES users(id),
    reason TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX staff_actions_by_at ON staff_actions (at);
CREATE INDEX staff_actions_by_account ON staff_actions (account_id, at);
CREATE INDEX staff_actions_by_staff ON staff_actions (staff_id, at);

CREATE TABLE account_notes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES service_accounts(id),
    staff_id INTEGER NOT NULL REFERENCES staff(id),
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX account_notes_by_account ON account_notes (account_id, at);

-- A payment a representative took by phone (the resident read the card to them on the
-- gateway's hosted page; the portal still never sees it).
ALTER TABLE payments ADD COLUMN taken_by_staff_id INTEGER REFERENCES staff(id);

-- Search: partial, case-insensitive matches on names, addresses and numbers through a
-- trigram index (SQLite FTS5). No triggers on service_accounts (they would make a
-- 100,000-row import several times slower and inflate its counts): rows imported after
-- `indexed_up_to` are (re)indexed after each import and before each staff search
-- (staff/search_index.py). Imports take their timestamp inside their write lock, so
-- updated_at only grows from one import to the next.
CREATE VIRTUAL TABLE account_search USING fts5(
    customer_number, account_number, name, service_address, tokenize='trigram'
);
CREATE TABLE search_index_state (
    name TEXT PRIMARY KEY,
    indexed_up_to TEXT
);
CREATE INDEX service_accounts_by_updated ON service_accounts (updated_at);  -- max() at each search
INSERT INTO account_search (rowid, customer_number, account_number, name, service_address)
    SELECT id, customer_number, account_number, name, service_address FROM service_accounts;
INSERT INTO search_index_state (name, indexed_up_to)
    SELECT 'accounts', max(updated_at) FROM service_accounts;

-- Logins change one at a time (registration, an email change): triggers keep up.
CREATE VIRTUAL TABLE login_search USING fts5(
    username, email, content='users', content_rowid='id', tokenize='trigram'
);
INSERT INTO login_search (rowid, username, email) SELECT id, username, email FROM users;
CREATE TRIGGER login_search_insert AFTER INSERT ON users BEGIN
    INSERT INTO login_search (rowid, username, email) VALUES (new.id, new.username, new.email);
END;
CREATE TRIGGER login_search_delete AFTER DELETE ON users BEGIN
    INSERT INTO login_search (login_search, rowid, username, email)
    VALUES ('delete', old.id, old.username, old.email);
END;
CREATE TRIGGER login_search_update AFTER UPDATE OF username, email ON users BEGIN
    INSERT INTO login_search (login_search, rowid, username, email)
    VALUES ('delete', old.id, old.username, old.email);
    INSERT INTO login_search (rowid, username, email) VALUES (new.id, new.username, new.email);
END;

-- A resident's audit trail and recent sign-ins, read by username on the staff view.
CREATE INDEX audit_by_username ON audit_log (username, at);
CREATE INDEX service_accounts_by_account_key ON service_accounts (account_key);
