"""Registered tokens and venue beacons."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from matching_service.db import Base


class Device(Base):
    """A token (role "wearable") or venue beacon (role "venue")."""

    __tablename__ = "devices"

    serial: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    identity: Mapped[str] = mapped_column(sa.String(16))
    # AES-256-GCM under the operator's master key: nonce(12) || ciphertext+tag; AAD binds serial.
    seed_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    auth_key_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    tx_power_dbm: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    board: Mapped[str] = mapped_column(sa.String(64), default="")
    venue_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    venue_place: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    holder_ref: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    registered_at: Mapped[int] = mapped_column(sa.BigInteger)
    registered_by: Mapped[str] = mapped_column(sa.String(32))
