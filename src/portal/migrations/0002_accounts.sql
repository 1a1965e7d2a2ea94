-- Online accounts (sign-ins), their links to service accounts, sessions, one-time
-- tokens, the mail outbox and the security audit log.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,          -- lower-cased: unique without regard to case
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,                    -- lower-cased, for look-ups
    password_hash TEXT NOT NULL,
    paperless INTEGER NOT NULL DEFAULT 0,
    printed INTEGER NOT NULL DEFAULT 0,
    locale TEXT NOT NULL DEFAULT 'en',
    created_at TEXT NOT NULL,
    verified_at TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,   -- consecutive; cleared by success or reset
    locked_until TEXT
);
CREATE INDEX users_by_email ON users (email_key);

-- A service account is linked to one sign-in at a time: account_id is the key.
CREATE TABLE user_accounts (
    account_id INTEGER PRIMARY KEY REFERENCES service_accounts(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    linked_at TEXT NOT NULL
);
CREATE INDEX user_accounts_by_user ON user_accounts (user_id);

-- One-time links: email verification, password reset, email change. Only a hash of
-- the code is stored.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset', 'email')),
    token_hash TEXT NOT NULL UNIQUE,
    data TEXT,                                  -- e.g. the new address for 'email'
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX tokens_by_user ON tokens (user_id, purpose);

-- Server-side sessions; the cookie holds a random id, the table its hash.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    remember INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Failed sign-ins per client address (per-account counts live on users).
CREATE TABLE login_failures (
    id INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX login_failures_by_client ON login_failures (client, at);

-- Mail written in the same transaction as the change that caused it; a background
-- task sends it with retries.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (sent_at, next_attempt_at);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    username TEXT,
    client TEXT,
    detail TEXT
);
