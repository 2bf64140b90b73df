"""Retention: what the service keeps, and for how long.

Tokens keep 21 days of logs; keys are accepted at most 15 days old and exposures count for 14.
`prune(session, days)` deletes encounter records first seen before the cut-off, the sync
sessions left without records, diagnosis keys whose day ended before it (with the exposures
that cite them), and exposures last seen before it. The registry, cases and the audit log stay.
"""
from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from matching_service.cases.models import DiagnosisKey
from matching_service.reports.models import Exposure
from matching_service.uploads.models import EncounterRecord, SyncSession

INTERVAL_S = 600


def prune(session: Session, older_than_days: int, now: int | None = None) -> dict:
    now = int(time.time()) if now is None else now
    cutoff = now - older_than_days * 86400
    encounters = session.execute(sa.delete(EncounterRecord).where(
        EncounterRecord.first_seen < cutoff)).rowcount
    syncs = session.execute(sa.delete(SyncSession).where(
        SyncSession.synced_at < cutoff,
        ~sa.exists().where(EncounterRecord.sync_id == SyncSession.id))).rowcount
    exposures = session.execute(sa.delete(Exposure).where(Exposure.last_seen < cutoff)).rowcount
    keys = session.execute(sa.delete(DiagnosisKey).where(
        (DiagnosisKey.rolling_start_interval + DiagnosisKey.rolling_period) * INTERVAL_S
        < cutoff)).rowcount
    return {"encounter records": encounters, "sync sessions": syncs, "exposures": exposures,
            "diagnosis keys": keys}
