-- Two-step verification for residents (optional, My Profile): an authenticator app's
-- code after the password. totp_secret is set when the resident starts turning it on;
-- two_step_at only once a code from the app proved the setup, and only then is a code
-- asked at sign-in.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;      -- a code's time step is accepted once
ALTER TABLE users ADD COLUMN two_step_at TEXT;
ALTER TABLE users ADD COLUMN code_failures INTEGER NOT NULL DEFAULT 0;  -- wrong codes in a row

-- Ten single-use recovery codes per resident with two-step verification, only hashes.
CREATE TABLE recovery_codes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX recovery_codes_by_user ON recovery_codes (user_id);

-- A sign-in whose password was right, waiting for the code (5 minutes, 5 tries). The
-- browser holds a random id in a cookie; the table its hash.
CREATE TABLE pending_sign_ins (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    remember INTEGER NOT NULL DEFAULT 0,
    next TEXT NOT NULL DEFAULT '',
    device TEXT,                                -- a remembered-device value to set, if new
    tries INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
