"""API keys, roles, per-key rate limits and the audit log."""
