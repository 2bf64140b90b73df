"""Public GAEN export endpoints (what phone apps and other key servers download)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from matching_service.auth.deps import context
from matching_service.context import ServiceContext
from matching_service.exports import gaen, service

router = APIRouter(prefix="/v1/exports", tags=["exports"])


@router.get("/latest.zip", summary="Signed GAEN export of the last 14 days of case keys",
            response_class=Response,
            responses={200: {"content": {"application/zip": {}}}})
def latest(ctx: ServiceContext = Depends(context)) -> Response:
    with ctx.sessions() as session:
        data, count = service.build_export(session, ctx.export_key, ctx.signature_info,
                                           ctx.settings.region)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="export.zip"',
                             "X-Key-Count": str(count), "Cache-Control": "max-age=300"})


@router.get("/public-key.pem", summary="The public key that verifies our export.sig",
            response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def public_key(ctx: ServiceContext = Depends(context)) -> Response:
    return Response(gaen.public_key_pem(ctx.export_key), media_type="application/x-pem-file")
