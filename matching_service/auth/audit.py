"""The audit log: who did what, to what, with what outcome."""
from __future__ import annotations

import json
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from matching_service.auth.keys import Principal
from matching_service.auth.models import AuditEntry


def record(session: Session, principal: Principal | None, action: str, target: str = "",
           outcome: str = "ok", **detail) -> None:
    """Add an audit entry to the caller's transaction (committed with the action itself)."""
    session.add(AuditEntry(
        at=int(time.time()), key_id=principal.key_id if principal else None,
        role=principal.role if principal else None, action=action, target=str(target)[:200],
        outcome=outcome, detail=json.dumps(detail, sort_keys=True, default=str)[:4000]))


def record_now(factory: sessionmaker[Session], principal: Principal | None, action: str,
               target: str = "", outcome: str = "denied", **detail) -> None:
    """Record in a transaction of its own: for refusals, whose own transaction rolls back."""
    with factory() as session:
        record(session, principal, action, target, outcome, **detail)
        session.commit()


def entries(session: Session, limit: int = 100, key_id: str | None = None,
            action: str | None = None) -> list[dict]:
    query = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if key_id:
        query = query.where(AuditEntry.key_id == key_id)
    if action:
        query = query.where(AuditEntry.action == action)
    return [{"id": e.id, "at": e.at, "key_id": e.key_id, "role": e.role, "action": e.action,
             "target": e.target, "outcome": e.outcome, "detail": json.loads(e.detail or "{}")}
            for e in session.scalars(query)]
