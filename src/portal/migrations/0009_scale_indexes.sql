-- A million accounts: a monthly import adds a bill to every account, and each index on
-- bills keyed by account costs one page write per few accounts. The UNIQUE
-- (account_id, bill_number) index already finds an account's bills (two years are a
-- couple of dozen rows, sorted by date in microseconds), so the second index, by
-- (account_id, bill_date), only doubled the import's writing time and about 1 GB of disk.
DROP INDEX bills_by_account_date;

-- A card about to expire is shown on the dashboard with what it pays: the AutoPay and
-- the scheduled payments that use it, looked up by method (a scan of every enrolment
-- and schedule otherwise, at a million accounts tens of milliseconds per card).
CREATE INDEX autopay_by_method ON autopay (method_id);
CREATE INDEX schedules_by_method ON schedules (method_id) WHERE method_id IS NOT NULL;
