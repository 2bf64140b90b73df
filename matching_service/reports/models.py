"""Stored matching results: one row per (token, UTC day, diagnosis-key source).

A source is "case:<id>" for a case's keys or "import:<id>" for a phone-app key file. `method`
says how it was found: "keys" (the token's log matched the source's diagnosis keys), "case"
(the case report: centralized resolution of the case's log, both directions, and venue
co-visits), "venue" (a later upload that puts the token at a case's venue at the same time).
Rows are recomputed (replaced) whenever new logs or new keys arrive for them.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from matching_service.db import Base


class Exposure(Base):
    __tablename__ = "exposures"
    __table_args__ = (sa.UniqueConstraint("serial", "day", "source", "method", name="uq_exposures_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(sa.ForeignKey("devices.serial"), index=True)
    day: Mapped[int] = mapped_column(sa.Integer)  # UTC day number (unix_s // 86400)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    method: Mapped[str] = mapped_column(sa.String(16))
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cases.id"), nullable=True)
    first_seen: Mapped[int] = mapped_column(sa.BigInteger)
    last_seen: Mapped[int] = mapped_column(sa.BigInteger)
    duration_s: Mapped[int] = mapped_column(sa.Integer)
    min_attenuation_db: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    # GAEN weighted seconds; for venue co-visits the seconds of overlap with the case's visit.
    weighted_s: Mapped[float] = mapped_column(sa.Float)
    exposed: Mapped[bool] = mapped_column(sa.Boolean)
    computed_at: Mapped[int] = mapped_column(sa.BigInteger)
