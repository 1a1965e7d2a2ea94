-- Sign-in throttling per (username, network) instead of per address alone, and the
-- devices a resident has signed in from (a remembered device is not held up by
-- failures that other people caused from a shared address).
ALTER TABLE login_failures ADD COLUMN user_key TEXT;
CREATE INDEX login_failures_by_user ON login_failures (user_key, client, at);

CREATE TABLE known_devices (
    token_hash TEXT PRIMARY KEY,               -- SHA-256 of the cookie's random value
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL
);
CREATE INDEX known_devices_by_user ON known_devices (user_id);

-- Mail asked for on a web form is limited per destination address.
CREATE INDEX outbox_by_address ON outbox (to_addr COLLATE NOCASE, created_at);

-- Registrations never verified release their account after 24 hours.
CREATE INDEX users_unverified ON users (created_at) WHERE verified_at IS NULL;
