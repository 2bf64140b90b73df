"""Positive cases: one-time codes, diagnosis keys, imported phone keys."""
