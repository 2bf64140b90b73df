"""Positive-case endpoints: issue codes (official), redeem them (clinic), list cases."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from matching_service import RequestError, TooManyRequests, responses
from matching_service.auth import audit
from matching_service.auth.deps import context, require
from matching_service.cases import service
from matching_service.context import ServiceContext
from matching_service.db import transaction
from matching_service.reports import service as reports

router = APIRouter(prefix="/v1", tags=["cases"])


@router.post("/codes", status_code=201, summary="Issue a one-time code for a positive token",
             response_model=responses.CodeIssued)
def issue_code(body: service.CodeRequest, principal=require("official"),
               ctx: ServiceContext = Depends(context)) -> dict:
    with transaction(ctx.sessions) as session:
        result = service.issue_code(session, ctx.pepper, body, principal.key_id,
                                    ctx.settings.code_ttl_s)
        audit.record(session, principal, "issue_code", body.token, code_id=result["code_id"])
    return result


@router.post("/cases", status_code=201,
             summary="Redeem a code with the token's diagnosis keys and full log",
             response_model=responses.CaseCreated)
def redeem(body: service.Redemption, principal=require("clinic"),
           ctx: ServiceContext = Depends(context)) -> dict:
    budget = ctx.settings.redeem_failures_per_hour
    # Failed redemptions spend a per-key budget of `budget` per hour: guessing stays hopeless.
    if ctx.redeem_limiter.peek(f"fail:{principal.key_id}", budget, 3600.0) > 0:
        audit.record_now(ctx.sessions, principal, "redeem_code", body.log.token, "denied",
                         reason="too many failed codes")
        raise TooManyRequests("too many failed verification codes from this key: wait before "
                              "trying again", retry_after_s=3600 / budget)
    try:
        with transaction(ctx.sessions) as session:
            result = service.redeem(session, ctx.pepper, body, principal.key_id,
                                    ctx.settings.max_records_per_upload)
            audit.record(session, principal, "redeem_code", body.log.token,
                         case_id=result["case_id"], keys=result["keys_stored"])
    except RequestError as error:
        if error.status in (403, 409, 410):
            ctx.redeem_limiter.take(f"fail:{principal.key_id}", budget, 3600.0)
        audit.record_now(ctx.sessions, principal, "redeem_code", body.log.token, "rejected",
                         reason=str(error))
        raise
    reports.rematch_sources(ctx, [f"case:{result['case_id']}"])
    return result


@router.get("/cases", summary="All positive cases", response_model=responses.CaseList)
def list_cases(principal=require("official"), ctx: ServiceContext = Depends(context)) -> dict:
    with ctx.sessions() as session:
        return {"cases": service.list_cases(session)}
