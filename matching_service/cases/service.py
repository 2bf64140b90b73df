"""Positive cases: officials issue one-time codes; clinics redeem them with the token's keys.

Codes: 12 characters of Crockford base32 (60 bits), shown as XXXX-XXXX-XXXX, valid for
`code_ttl_s`, usable once, bound to one token serial. Only an HMAC of the code is stored (keyed
from the master key), so a copy of the database does not reveal live codes. Failed redemptions
are rate-limited per API key (the guessing defence on top of the 60 bits).

Diagnosis keys are validated as key servers do: exactly 16 bytes, rolling period 1..144, start
interval not in the future and at most 15 days old, at most 30 keys per case.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Literal

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.orm import Session

from matching_service import Conflict, Forbidden, InvalidInput, NotFound, RequestError
from matching_service.cases.models import Case, DiagnosisKey, VerificationCode
from matching_service.registry.service import get_device
from matching_service.schemas import Serial, Strict, UInt32, UnixTime, b64_of_length, decode_base64
from matching_service.uploads.service import Upload, store_upload

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
MAX_KEYS = 30
MAX_KEY_AGE_DAYS = 15
ROLLING_PERIOD = 144
INTERVAL_S = 600
DEFAULT_TRANSMISSION_RISK = 4


class Gone(RequestError):
    status = 410
    code = "expired"


class CodeRequest(Strict):
    token: Serial
    report_type: Literal[1, 2] = 1
    onset_at: UnixTime | None = None


class KeyIn(Strict):
    key: b64_of_length(16)
    rolling_start_interval: UInt32
    rolling_period: int = Field(default=ROLLING_PERIOD, ge=1, le=ROLLING_PERIOD)
    transmission_risk: int = Field(default=DEFAULT_TRANSMISSION_RISK, ge=0, le=8)


class Redemption(Strict):
    code: str = Field(min_length=1, max_length=40)
    keys: list[KeyIn] = Field(max_length=100)
    log: Upload


def normalise_code(code: str) -> str:
    """Forgive how people type codes: case, dashes, spaces, O for 0, I/L for 1."""
    text = code.strip().upper().replace("-", "").replace(" ", "")
    return text.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def format_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def code_hash(pepper: bytes, code: str) -> bytes:
    return hmac.new(pepper, normalise_code(code).encode(), hashlib.sha256).digest()


def code_pepper(master_key: bytes) -> bytes:
    return hmac.new(master_key, b"TT-verification-code-v1", hashlib.sha256).digest()


def issue_code(session: Session, pepper: bytes, request: CodeRequest, by: str, ttl_s: int) -> dict:
    device = get_device(session, request.token)
    if device.role != "wearable":
        raise InvalidInput(f"{device.serial} is a venue beacon, not a wearer's token")
    now = int(time.time())
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    row = VerificationCode(code_hash=code_hash(pepper, code), serial=device.serial,
                           report_type=request.report_type, onset_at=request.onset_at,
                           issued_by=by, issued_at=now, expires_at=now + ttl_s)
    session.add(row)
    session.flush()
    return {"code": format_code(code), "token": device.serial, "expires_at": row.expires_at,
            "code_id": row.id}


def validate_keys(keys: list[KeyIn], now: int) -> None:
    """Raise InvalidInput naming the first key that fails the reference rules."""
    if len(keys) > MAX_KEYS:
        raise InvalidInput(f"at most {MAX_KEYS} diagnosis keys per case, got {len(keys)}")
    current = now // INTERVAL_S
    oldest = current - MAX_KEY_AGE_DAYS * ROLLING_PERIOD
    seen = set()
    for index, key in enumerate(keys):
        if key.rolling_start_interval > current:
            raise InvalidInput(f"key {index} starts in the future", index=index)
        if key.rolling_start_interval + key.rolling_period < oldest:
            raise InvalidInput(f"key {index} is more than {MAX_KEY_AGE_DAYS} days old", index=index)
        identity = (key.key, key.rolling_start_interval)
        if identity in seen:
            raise InvalidInput(f"key {index} is listed twice", index=index)
        seen.add(identity)


def find_code(session: Session, pepper: bytes, code: str, now: int) -> VerificationCode:
    """The live code row; raises Forbidden (unknown), Gone (expired) or Conflict (used)."""
    normal = normalise_code(code)
    if len(normal) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in normal):
        raise Forbidden("the verification code is not valid")
    row = session.scalar(sa.select(VerificationCode).where(
        VerificationCode.code_hash == code_hash(pepper, normal)))
    if row is None:
        raise Forbidden("the verification code is not valid")
    if row.redeemed_at is not None:
        raise Conflict("the verification code has already been used")
    if row.expires_at < now:
        raise Gone("the verification code has expired: ask the health official for a new one")
    return row


def redeem(session: Session, pepper: bytes, redemption: Redemption, by: str,
           max_records: int) -> dict:
    """Consume the code, store the case's log and keys. One transaction: all or nothing.

    Code failures (unknown, used, expired, other token) raise before anything is written;
    the caller counts them against the key's guessing budget."""
    now = int(time.time())
    row = find_code(session, pepper, redemption.code, now)
    if redemption.log.token != row.serial:
        raise Forbidden("the verification code was issued for another token")
    validate_keys(redemption.keys, now)
    upload_result = store_upload(session, redemption.log, by, max_records)
    claimed = session.execute(
        sa.update(VerificationCode)
        .where(VerificationCode.id == row.id, VerificationCode.redeemed_at.is_(None))
        .values(redeemed_at=now, redeemed_by=by)).rowcount
    if claimed != 1:
        raise Conflict("the verification code has already been used")
    case = Case(serial=row.serial, code_id=row.id, report_type=row.report_type, reported_at=now)
    session.add(case)
    session.flush()
    onset_day = row.onset_at // 86400 if row.onset_at is not None else None
    existing = {(bytes(t), s) for t, s in session.execute(
        sa.select(DiagnosisKey.tek, DiagnosisKey.rolling_start_interval).where(
            DiagnosisKey.tek.in_([decode_base64(k.key) for k in redemption.keys])))} \
        if redemption.keys else set()
    stored = 0
    for key in redemption.keys:
        tek = decode_base64(key.key)
        if (tek, key.rolling_start_interval) in existing:
            continue
        session.add(DiagnosisKey(
            tek=tek, rolling_start_interval=key.rolling_start_interval,
            rolling_period=key.rolling_period, report_type=row.report_type,
            transmission_risk=key.transmission_risk,
            days_since_onset=(key.rolling_start_interval * INTERVAL_S // 86400 - onset_day)
            if onset_day is not None else None,
            source="token", case_id=case.id, created_at=now))
        stored += 1
    session.flush()
    return {"case_id": case.id, "token": row.serial, "keys_stored": stored,
            "log": upload_result}


def get_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"case {case_id} does not exist")
    return case


def case_keys(session: Session, case_id: int | None = None, since_interval: int | None = None,
              key_ids: list[int] | None = None) -> list[dict]:
    """Diagnosis keys as plain dicts for the matching engine."""
    query = sa.select(DiagnosisKey)
    if case_id is not None:
        query = query.where(DiagnosisKey.case_id == case_id)
    if since_interval is not None:
        query = query.where(DiagnosisKey.rolling_start_interval + DiagnosisKey.rolling_period
                            >= since_interval)
    if key_ids is not None:
        query = query.where(DiagnosisKey.id.in_(key_ids))
    return [{"id": k.id, "tek": bytes(k.tek), "rolling_start_interval": k.rolling_start_interval,
             "rolling_period": k.rolling_period, "report_type": k.report_type,
             "transmission_risk": k.transmission_risk, "source": k.source, "case_id": k.case_id,
             "days_since_onset": k.days_since_onset}
            for k in session.scalars(query.order_by(DiagnosisKey.id))]


def list_cases(session: Session) -> list[dict]:
    return [{"case_id": c.id, "token": c.serial, "reported_at": c.reported_at,
             "report_type": c.report_type}
            for c in session.scalars(sa.select(Case).order_by(Case.id))]
