"""Accounts: people who sign in (users, sessions, sign-in throttling) and the audit log."""
