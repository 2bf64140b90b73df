"""Admin endpoints: API keys and the audit log."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from matching_service import NotFound, responses
from matching_service.auth import audit, keys
from matching_service.auth.deps import context, require
from matching_service.context import ServiceContext
from matching_service.db import transaction
from matching_service.schemas import Strict, Text

router = APIRouter(prefix="/v1", tags=["admin"])


class KeyRequest(Strict):
    role: Literal["clinic", "official", "admin"]
    label: Text = ""
    rate_limit_per_min: int | None = Field(default=None, ge=1, le=1_000_000)


@router.post("/keys", status_code=201, summary="Create an API key (shown once)",
             response_model=responses.KeyCreated)
def create_key(body: KeyRequest, principal=require("admin"),
               ctx: ServiceContext = Depends(context)) -> dict:
    with transaction(ctx.sessions) as session:
        full, row = keys.create_key(session, body.role, body.label, body.rate_limit_per_min)
        audit.record(session, principal, "create_key", row.key_id, role=body.role, label=body.label)
    return {"key": full, "key_id": row.key_id, "role": row.role, "label": row.label,
            "rate_limit_per_min": row.rate_limit_per_min}


@router.delete("/keys/{key_id}", summary="Revoke an API key", response_model=responses.KeyRevoked)
def revoke_key(key_id: str, principal=require("admin"),
               ctx: ServiceContext = Depends(context)) -> dict:
    with transaction(ctx.sessions) as session:
        if not keys.revoke_key(session, key_id):
            raise NotFound(f"no live API key {key_id}")
        audit.record(session, principal, "revoke_key", key_id)
    return {"key_id": key_id, "revoked": True}


@router.get("/audit", summary="Read the audit log, newest first", response_model=responses.AuditLog)
def read_audit(limit: int = Query(100, ge=1, le=1000), key_id: str | None = Query(None, max_length=32),
               action: str | None = Query(None, max_length=64), principal=require("admin"),
               ctx: ServiceContext = Depends(context)) -> dict:
    with ctx.sessions() as session:
        return {"entries": audit.entries(session, limit, key_id, action)}
