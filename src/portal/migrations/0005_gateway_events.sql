-- A real processor (Stripe): its signed events, bank payments that settle days later,
-- and the money that comes back out (bank failures, refunds, disputes).

-- Every event the processor sent, once: its id is the key, so a redelivered event is
-- recognised and changes nothing. Events for payments the portal does not know are
-- kept here too (payment_id NULL) and otherwise ignored.
CREATE TABLE gateway_events (
    id TEXT PRIMARY KEY,                        -- the processor's event id (evt_…)
    type TEXT NOT NULL,
    payment_id INTEGER REFERENCES payments(id),
    received_at TEXT NOT NULL,
    outcome TEXT NOT NULL                       -- what the portal did with it
);

-- The same event never appears twice in a payment's history.
ALTER TABLE payment_events ADD COLUMN gateway_event_id TEXT;
CREATE UNIQUE INDEX payment_events_once ON payment_events (gateway_event_id)
    WHERE gateway_event_id IS NOT NULL;

-- 1 while a bank payment is accepted (it has a confirmation number, counts as paid and
-- is exported) but the money has not arrived; a failure then becomes a reversal.
ALTER TABLE payments ADD COLUMN processing INTEGER NOT NULL DEFAULT 0;
-- The processor's id of the money movement (Stripe PaymentIntent pi_…), which refund
-- and dispute events name.
ALTER TABLE payments ADD COLUMN gateway_intent TEXT;
-- The payer's language when the payment was made, for emails sent later.
ALTER TABLE payments ADD COLUMN locale TEXT;
CREATE INDEX payments_by_intent ON payments (gateway_intent);
CREATE INDEX payments_pending ON payments (status, processing, created_at);

-- Money taken back after a payment was accepted. Exported once, as a negative row, in
-- the batch of the day it happened; the payment's own row is never changed.
CREATE TABLE payment_reversals (
    id INTEGER PRIMARY KEY,
    payment_id INTEGER NOT NULL REFERENCES payments(id),
    kind TEXT NOT NULL CHECK (kind IN ('bank_failed', 'refund', 'dispute')),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    reason_code TEXT NOT NULL,                  -- the processor's code, e.g. insufficient_funds
    gateway_ref TEXT NOT NULL UNIQUE,           -- what makes it unique at the processor
    at TEXT NOT NULL,
    export_batch TEXT
);
CREATE INDEX payment_reversals_by_payment ON payment_reversals (payment_id);
CREATE INDEX payment_reversals_unexported ON payment_reversals (export_batch, at);
