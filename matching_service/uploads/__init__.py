"""Clinic uploads: sync sessions and encounter records."""
