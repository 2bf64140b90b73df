"""Clinic upload endpoint."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from matching_service import responses
from matching_service.auth import audit
from matching_service.auth.deps import context, require
from matching_service.context import ServiceContext
from matching_service.db import transaction
from matching_service.reports import service as reports
from matching_service.uploads import service

router = APIRouter(prefix="/v1", tags=["uploads"])


@router.post("/uploads", summary="Upload a batch of encounter records and their sync sessions",
             response_model=responses.UploadResult)
def upload(body: service.Upload, principal=require("clinic"),
           ctx: ServiceContext = Depends(context)) -> dict:
    with transaction(ctx.sessions) as session:
        result = service.store_upload(session, body, principal.key_id,
                                      ctx.settings.max_records_per_upload)
        audit.record(session, principal, "upload", body.token,
                     outcome="ok" if not result["conflicts"] else "conflict",
                     stored=result["stored"], duplicates=result["duplicates"],
                     conflicts=result["conflicts"][:20])
    if result["stored"]:
        reports.rematch_tokens(ctx, [body.token])
    return result
