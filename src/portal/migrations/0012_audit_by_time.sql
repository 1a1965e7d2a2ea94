-- The audit log by time, for housekeeping under PORTAL_AUDIT_KEEP_DAYS: its oldest rows
-- are read from the start of this index, a batch at a time.
CREATE INDEX audit_by_time ON audit_log (at);
