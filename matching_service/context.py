"""Everything a running service instance holds: settings, database, secrets, limiters.

Built once by `create_app(settings)` (or by a CLI command) and passed explicitly; there are no
module-level globals, so tests can run several instances side by side.
"""
from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from matching_service import db
from matching_service.auth.ratelimit import RateLimiter
from matching_service.cases.service import code_pepper
from matching_service.exports import gaen
from matching_service.registry.crypto import SecretBox
from matching_service.settings import Settings, resolve_secrets


@dataclasses.dataclass
class ServiceContext:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    pepper: bytes
    export_key: object
    limiter: RateLimiter
    redeem_limiter: RateLimiter
    # Derived data that never changes once computed (e.g. a case's resolved venue sightings).
    cache: dict = dataclasses.field(default_factory=dict)

    @property
    def signature_info(self) -> gaen.SignatureInfo:
        return gaen.SignatureInfo(verification_key_version=self.settings.export_key_version,
                                  verification_key_id=self.settings.export_key_id)

    def close(self) -> None:
        self.engine.dispose()


def open_context(settings: Settings, migrate: bool = True, announce: bool = True) -> ServiceContext:
    """Resolve secrets, connect, and (by default) bring the schema up to date."""
    settings = resolve_secrets(settings, announce=announce)
    engine = db.make_engine(settings.db_url)
    if migrate:
        db.migrate(engine)
    try:
        export_key = gaen.load_private_key(settings.export_key_file.read_bytes())
    except (OSError, ValueError) as error:
        raise gaen.ExportError(f"cannot load export signing key {settings.export_key_file}: {error}")
    return ServiceContext(settings=settings, engine=engine, sessions=db.session_factory(engine),
                          box=SecretBox(settings.master_key), pepper=code_pepper(settings.master_key),
                          export_key=export_key, limiter=RateLimiter(), redeem_limiter=RateLimiter())
