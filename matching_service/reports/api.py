"""Outputs: exposure status per token, case reports, exposed wearers to call."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from matching_service import responses
from matching_service.auth import audit
from matching_service.auth.deps import context, require
from matching_service.context import ServiceContext
from matching_service.reports import service
from matching_service.schemas import SERIAL_PATTERN

router = APIRouter(prefix="/v1", tags=["reports"])


@router.get("/tokens/{serial}/status", summary="Exposure status of one token (clinic screen)",
            response_model=responses.TokenStatus)
def status(serial: str = Path(pattern=SERIAL_PATTERN), principal=require("clinic", "official"),
           ctx: ServiceContext = Depends(context)) -> dict:
    return service.token_status(ctx, serial)


@router.get("/cases/{case_id}/report", summary="Case report: contacts, venues, who to call",
            response_model=responses.CaseReport)
def case_report(case_id: int = Path(ge=1, le=2**31 - 1), principal=require("official"),
                ctx: ServiceContext = Depends(context)) -> dict:
    report = service.case_report(ctx, case_id)
    audit.record_now(ctx.sessions, principal, "read_case_report", f"case:{case_id}", "ok",
                     contacts=len(report["contacts"]), exposed=len(report["exposed"]))
    return report


@router.get("/exposed", summary="Every wearer currently exposed (to call or visit)",
            response_model=responses.ExposedList)
def exposed(principal=require("official"), ctx: ServiceContext = Depends(context)) -> dict:
    wearers = service.exposed_wearers(ctx)
    audit.record_now(ctx.sessions, principal, "read_exposed", "", "ok", count=len(wearers))
    return {"exposed": wearers}
