"""Matching runs, exposure status and case reports (calls matching_service.matching)."""
