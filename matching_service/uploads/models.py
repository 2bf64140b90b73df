"""Uploaded sync sessions and encounter records (idempotent by token and sequence number)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from matching_service.db import Base


class SyncSession(Base):
    __tablename__ = "sync_sessions"
    __table_args__ = (sa.UniqueConstraint("serial", "synced_at", "first_seq", "last_seq",
                                          name="uq_sync_sessions_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(sa.ForeignKey("devices.serial"), index=True)
    synced_at: Mapped[int] = mapped_column(sa.BigInteger)
    token_time: Mapped[int] = mapped_column(sa.BigInteger)
    correction_s: Mapped[int] = mapped_column(sa.BigInteger)
    clock_was_set: Mapped[bool] = mapped_column(sa.Boolean)
    first_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    uploaded_at: Mapped[int] = mapped_column(sa.BigInteger)
    uploaded_by: Mapped[str] = mapped_column(sa.String(32))


class EncounterRecord(Base):
    __tablename__ = "encounters"
    __table_args__ = (sa.Index("ix_encounters_first_seen", "first_seen"),)

    serial: Mapped[str] = mapped_column(sa.ForeignKey("devices.serial"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    rpi: Mapped[bytes] = mapped_column(sa.LargeBinary(16), index=True)
    aem: Mapped[bytes] = mapped_column(sa.LargeBinary(4))
    first_seen_token: Mapped[int] = mapped_column(sa.BigInteger)
    first_seen: Mapped[int] = mapped_column(sa.BigInteger)  # corrected to host (true) time
    duration_s: Mapped[int] = mapped_column(sa.Integer)
    scans: Mapped[int] = mapped_column(sa.Integer)
    rssi_max: Mapped[int] = mapped_column(sa.Integer)
    rssi_mean: Mapped[int] = mapped_column(sa.Integer)
    flags: Mapped[int] = mapped_column(sa.Integer)
    sync_id: Mapped[int] = mapped_column(sa.ForeignKey("sync_sessions.id"))
