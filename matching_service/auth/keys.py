"""API keys: `ms_<key_id>_<secret>`. Only SHA-256 of the secret is stored.

Secrets are 32 random bytes, so a fast hash is the right tool (no password stretching needed);
comparison is constant-time. The key id is public: it names the key in the audit log.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from matching_service.auth.models import ROLES, ApiKey

_KEY_PATTERN = re.compile(r"ms_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: the key's public id and role, and its own rate limit if set."""

    key_id: str
    role: str
    rate_limit_per_min: int | None = None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def create_key(session: Session, role: str, label: str = "",
               rate_limit_per_min: int | None = None) -> tuple[str, ApiKey]:
    """Create a key; returns (full key shown once, stored row)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if rate_limit_per_min is not None and not 1 <= rate_limit_per_min <= 1_000_000:
        raise ValueError("rate limit must be between 1 and 1000000 requests per minute")
    key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    row = ApiKey(key_id=key_id, secret_hash=_hash(secret), role=role, label=label[:200],
                 rate_limit_per_min=rate_limit_per_min, created_at=int(time.time()))
    session.add(row)
    session.flush()
    return f"ms_{key_id}_{secret}", row


def parse_key(presented: str) -> tuple[str, str] | None:
    match = _KEY_PATTERN.fullmatch(presented.strip())
    return (match.group(1), match.group(2)) if match else None


def authenticate(session: Session, presented: str) -> Principal | None:
    """The Principal for a presented key, or None if unknown, revoked or wrong."""
    parsed = parse_key(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = session.scalar(sa.select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    return Principal(key_id=row.key_id, role=row.role, rate_limit_per_min=row.rate_limit_per_min)


def revoke_key(session: Session, key_id: str) -> bool:
    row = session.scalar(sa.select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = int(time.time())
    return True
