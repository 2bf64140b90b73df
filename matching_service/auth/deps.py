"""FastAPI dependencies: who is calling (API key), may they (role), not too often (rate)."""
from __future__ import annotations

from fastapi import Depends, Request

from matching_service import Forbidden, TooManyRequests, Unauthorized
from matching_service.auth import audit, keys
from matching_service.auth.keys import Principal
from matching_service.context import ServiceContext


def context(request: Request) -> ServiceContext:
    return request.app.state.ctx


def _presented_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key", "").strip()


def require(*roles: str):
    """Dependency returning the caller's Principal if it holds one of `roles`."""

    def dependency(request: Request) -> Principal:
        ctx = context(request)
        presented = _presented_key(request)
        if not presented:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        with ctx.sessions() as session:
            principal = keys.authenticate(session, presented)
        if principal is None:
            parsed = keys.parse_key(presented)
            if parsed is not None:  # a real-looking key that failed: worth an audit entry
                audit.record_now(ctx.sessions, None, "authenticate", parsed[0], "denied")
            raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)")
        rate = principal.rate_limit_per_min or ctx.settings.rate_limit_per_min[principal.role]
        wait_s = ctx.limiter.take(principal.key_id, rate)
        if wait_s:
            raise TooManyRequests(f"rate limit of {rate} requests per minute reached for this key",
                                  retry_after_s=wait_s)
        if principal.role not in roles:
            audit.record_now(ctx.sessions, principal, f"{request.method} {request.url.path}",
                             "", "denied", reason="role")
            raise Forbidden(f"this needs the {' or '.join(roles)} role; this key's role is "
                            f"{principal.role}")
        request.state.principal = principal
        return principal

    return Depends(dependency)
