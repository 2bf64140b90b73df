"""The FastAPI application factory: `create_app(settings)`; no module-level state."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from matching_service import VERSION, RequestError, TooManyRequests, db, responses
from matching_service.context import ServiceContext, open_context
from matching_service.settings import Settings

log = logging.getLogger("matching_service")


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than the {limit}-byte limit")


class BodyLimit:
    """Pure ASGI middleware: refuse bodies over `max_bytes`, by Content-Length up front and by
    counting what actually arrives (chunked uploads carry no length)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    response = _error(413, "too_large",
                                      f"the request body is larger than the {self.max_bytes}-byte limit"
                                      if declared > 0 else "the Content-Length header is not valid")
                    return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _error(status: int, code: str, message: str, headers: dict | None = None, **detail):
    return JSONResponse({"error": message, "code": code, **detail}, status_code=status,
                        headers=headers)


def _location(loc) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def create_app(settings: Settings, ctx: ServiceContext | None = None) -> FastAPI:
    """Build the app. Opens the database and migrates it unless a context is handed in."""
    from matching_service.auth.api import router as auth_router
    from matching_service.cases.api import router as cases_router
    from matching_service.exports.api import router as exports_router
    from matching_service.registry.api import router as registry_router
    from matching_service.reports.api import router as reports_router
    from matching_service.uploads.api import router as uploads_router

    if ctx is None:
        ctx = open_context(settings)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        ctx.close()

    app = FastAPI(
        lifespan=lifespan,
        title="matching-service",
        version=VERSION,
        description="National matching service for contact-tracing tokens: registry, clinic "
                    "uploads, positive cases, exposure status, case reports and GAEN exports. "
                    "See docs/service-api.md.",
    )
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, max_bytes=ctx.settings.max_body_bytes)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, error: RequestError):
        headers = None
        if isinstance(error, TooManyRequests):
            headers = {"Retry-After": str(max(1, int(error.retry_after_s + 0.999)))}
        return _error(error.status, error.code, str(error), headers, **error.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors()[:20]:
            if item.get("type") == "json_invalid":
                problems.append("the body is not valid JSON")
            else:
                problems.append(f"{_location(item.get('loc', ()))}: {item.get('msg', 'invalid')}")
        first = problems[0] if problems else "the request is not valid"
        return _error(422, "invalid_input", f"invalid request: {first}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException):
        if error.status_code == 400 and "parsing the body" in str(error.detail):
            return _error(422, "invalid_input", "invalid request: the body is not valid JSON",
                          problems=["the body is not valid JSON"])
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(sqlalchemy.exc.IntegrityError)
    async def _integrity(_request: Request, error: sqlalchemy.exc.IntegrityError):
        # Two requests raced to store the same thing; the loser changed nothing.
        return _error(409, "conflict", "a concurrent request stored the same data first: "
                                       "repeat the request (uploads are idempotent)")

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _database_down(_request: Request, error: sqlalchemy.exc.OperationalError):
        log.error("database unavailable: %s", error.orig)
        return _error(503, "unavailable", "the database is unavailable: try again shortly",
                      {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(_request: Request, error: Exception):
        log.exception("internal error")
        return _error(500, "internal", "internal error: the service logged the details")

    @app.get("/v1/health", tags=["health"], summary="Liveness and schema revision",
             response_model=responses.Health)
    def health() -> dict:
        return {"status": "ok", "version": VERSION, "database": ctx.engine.dialect.name,
                "schema_revision": db.current_revision(ctx.engine)}

    errors = {status: {"model": responses.Error, "description": description} for status, description in (
        (401, "no valid API key"), (403, "wrong role, or a code that is not valid"),
        (404, "no such token, case or key"), (409, "conflict (code used, identity changed)"),
        (413, "body or batch too large"), (422, "invalid input (details in `problems`)"),
        (429, "rate limited (see Retry-After)"))}
    for router in (auth_router, registry_router, uploads_router, cases_router, reports_router):
        app.include_router(router, responses=errors)
    app.include_router(exports_router)

    return app
