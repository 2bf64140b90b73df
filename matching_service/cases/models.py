"""One-time verification codes, positive cases, diagnosis keys and imported key batches."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from matching_service.db import Base

REPORT_CONFIRMED_TEST = 1


class VerificationCode(Base):
    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), unique=True)
    serial: Mapped[str] = mapped_column(sa.ForeignKey("devices.serial"), index=True)
    report_type: Mapped[int] = mapped_column(sa.Integer, default=REPORT_CONFIRMED_TEST)
    onset_at: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    issued_by: Mapped[str] = mapped_column(sa.String(32))
    issued_at: Mapped[int] = mapped_column(sa.BigInteger)
    expires_at: Mapped[int] = mapped_column(sa.BigInteger)
    redeemed_at: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    redeemed_by: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(sa.ForeignKey("devices.serial"), index=True)
    code_id: Mapped[int] = mapped_column(sa.ForeignKey("verification_codes.id"), unique=True)
    report_type: Mapped[int] = mapped_column(sa.Integer)
    reported_at: Mapped[int] = mapped_column(sa.BigInteger)


class KeyImport(Base):
    """A GAEN export file ingested from a phone-app key server."""

    __tablename__ = "key_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    region: Mapped[str] = mapped_column(sa.String(32))
    start_timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    end_timestamp: Mapped[int] = mapped_column(sa.BigInteger)
    keys: Mapped[int] = mapped_column(sa.Integer)
    signature_verified: Mapped[bool] = mapped_column(sa.Boolean)
    imported_at: Mapped[int] = mapped_column(sa.BigInteger)


class DiagnosisKey(Base):
    __tablename__ = "diagnosis_keys"
    __table_args__ = (sa.UniqueConstraint("tek", "rolling_start_interval",
                                          name="uq_diagnosis_keys_tek_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tek: Mapped[bytes] = mapped_column(sa.LargeBinary(16))
    rolling_start_interval: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    rolling_period: Mapped[int] = mapped_column(sa.Integer)
    report_type: Mapped[int] = mapped_column(sa.Integer)
    transmission_risk: Mapped[int] = mapped_column(sa.Integer)
    days_since_onset: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    source: Mapped[str] = mapped_column(sa.String(16))  # "token" | "import"
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cases.id"), nullable=True, index=True)
    import_id: Mapped[int | None] = mapped_column(sa.ForeignKey("key_imports.id"), nullable=True)
    created_at: Mapped[int] = mapped_column(sa.BigInteger, index=True)
