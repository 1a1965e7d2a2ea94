"""The Customer Services console: staff accounts with TOTP, their own sign-in at /staff,
search, a read-only view of a resident, audited actions, and the supervisors' pages."""
