"""Registry endpoints: register provisioning records, look tokens up."""
from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Path

from matching_service import InvalidInput, NotFound, responses
from matching_service.auth import audit
from matching_service.auth.deps import context, require
from matching_service.context import ServiceContext
from matching_service.db import transaction
from matching_service.registry import service
from matching_service.schemas import SERIAL_PATTERN

router = APIRouter(prefix="/v1/registry", tags=["registry"])
SerialPath = Path(pattern=SERIAL_PATTERN)


@router.post("", summary="Register tokens and venue beacons from provisioning records",
             response_model=responses.Registered)
def register(body: service.Registration, principal=require("clinic", "admin"),
             ctx: ServiceContext = Depends(context)) -> dict:
    limit = ctx.settings.max_tokens_per_registration
    if len(body.tokens) > limit:
        raise InvalidInput(f"at most {limit} tokens per registration request, got {len(body.tokens)}")
    with transaction(ctx.sessions) as session:
        result = service.register(session, ctx.box, body.tokens, principal.key_id)
        audit.record(session, principal, "register", f"{len(body.tokens)} tokens",
                     created=len(result["created"]), updated=len(result["updated"]))
    return result


@router.get("/{serial}", summary="A registered token or venue beacon (no secrets)",
            response_model=responses.DeviceInfo)
def get_device(serial: str = SerialPath, principal=require("clinic", "official", "admin"),
               ctx: ServiceContext = Depends(context)) -> dict:
    with ctx.sessions() as session:
        return service.describe(service.get_device(session, serial))


@router.get("/{serial}/auth-key", summary="The token's sync auth key (audited)",
            response_model=responses.AuthKey)
def get_auth_key(serial: str = SerialPath, principal=require("clinic"),
                 ctx: ServiceContext = Depends(context)) -> dict:
    with transaction(ctx.sessions) as session:
        device = service.get_device(session, serial)
        if device.auth_key_encrypted is None:
            raise NotFound(f"no auth key is registered for {serial}")
        key = ctx.box.open("auth_key", serial, device.auth_key_encrypted)
        audit.record(session, principal, "read_auth_key", serial)
    return {"serial": serial, "auth_key": base64.b64encode(key).decode()}
