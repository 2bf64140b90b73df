"""API keys (stored hashed) and the audit log."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from matching_service.db import Base

ROLES = ("clinic", "official", "admin")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Public half of the key (shown in audit entries); the secret half is only ever hashed.
    key_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    secret_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    role: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    rate_limit_per_min: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(sa.BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    key_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True, index=True)
    role: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(200), default="")
    outcome: Mapped[str] = mapped_column(sa.String(16))  # "ok" | "denied" | "rejected"
    detail: Mapped[str] = mapped_column(sa.Text, default="")
