-- Paying from a saved method in one step, expiring-card notices, and dismissing a failed
-- scheduled payment's notice on the dashboard.

-- A one-step payment from a saved method (origin 'saved_method') remembers which method
-- its form named: the same form sent again must name the same one.
ALTER TABLE payments ADD COLUMN saved_method_id INTEGER REFERENCES saved_methods(id);

-- The expiry ('YYYY-MM') whose "card expires soon" email went out: once per card and expiry.
ALTER TABLE saved_methods ADD COLUMN expiry_notice_for TEXT;

-- The resident dismissed the dashboard notice of this failed scheduled payment.
ALTER TABLE schedules ADD COLUMN dismissed_at TEXT;
