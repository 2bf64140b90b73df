"""Publishing our cases' keys as a signed GAEN export, and importing phone-app key servers'."""
from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from matching_service import Conflict, InvalidInput
from matching_service.cases.models import DiagnosisKey, KeyImport
from matching_service.exports import gaen

INTERVAL_S = 600
EXPORT_DAYS = 14


def build_export(session: Session, private_key, info: gaen.SignatureInfo, region: str,
                 now: int | None = None) -> tuple[bytes, int]:
    """Signed export zip of our own cases' keys from the last 14 days. Keys still valid (their
    day not over) are held back, as key servers do, so nobody can use them to track a wearer
    today. Returns (zip bytes, number of keys)."""
    now = int(time.time()) if now is None else now
    current = now // INTERVAL_S
    oldest = current - EXPORT_DAYS * 144
    rows = session.scalars(sa.select(DiagnosisKey).where(
        DiagnosisKey.source == "token",
        DiagnosisKey.rolling_start_interval + DiagnosisKey.rolling_period <= current,
        DiagnosisKey.rolling_start_interval + DiagnosisKey.rolling_period >= oldest,
    ).order_by(DiagnosisKey.tek)).all()  # sorted by key: no order leaks who uploaded when
    keys = tuple(gaen.ExposureKey(
        key_data=bytes(r.tek), transmission_risk_level=r.transmission_risk,
        rolling_start_interval_number=r.rolling_start_interval, rolling_period=r.rolling_period,
        report_type=r.report_type, days_since_onset_of_symptoms=r.days_since_onset) for r in rows)
    export = gaen.Export(start_timestamp=oldest * INTERVAL_S, end_timestamp=now, region=region,
                         batch_num=1, batch_size=1, keys=keys)
    return gaen.write_zip(export, private_key, info), len(keys)


def import_export(session: Session, data: bytes, public_key=None) -> dict:
    """Ingest a phone-app key server's export zip. With `public_key`, the signature must verify.
    Keys that are malformed (not 16 bytes, period outside 1..144) are skipped and counted;
    keys already known are not stored twice; the same file twice is a Conflict."""
    digest = hashlib.sha256(data).hexdigest()
    if session.scalar(sa.select(KeyImport.id).where(KeyImport.sha256 == digest)) is not None:
        raise Conflict("this export file has already been imported")
    try:
        export, verified = gaen.read_zip(data, public_key)
    except gaen.ExportError as error:
        raise InvalidInput(str(error)) from error
    now = int(time.time())
    batch = KeyImport(sha256=digest, region=export.region[:32],
                      start_timestamp=export.start_timestamp, end_timestamp=export.end_timestamp,
                      keys=0, signature_verified=verified, imported_at=now)
    session.add(batch)
    session.flush()
    valid, invalid, seen = [], 0, set()
    for key in export.keys:
        if len(key.key_data) != 16 or not 1 <= key.rolling_period <= 144 \
                or key.rolling_start_interval_number < 0 or key.report_type == 5:
            invalid += 1
            continue
        identity = (key.key_data, key.rolling_start_interval_number)
        if identity not in seen:
            seen.add(identity)
            valid.append(key)
    known = set()
    teks = [k.key_data for k in valid]
    for start in range(0, len(teks), 1000):
        known.update((bytes(t), s) for t, s in session.execute(
            sa.select(DiagnosisKey.tek, DiagnosisKey.rolling_start_interval).where(
                DiagnosisKey.tek.in_(teks[start:start + 1000]))))
    rows = [{"tek": k.key_data, "rolling_start_interval": k.rolling_start_interval_number,
             "rolling_period": k.rolling_period, "report_type": k.report_type or 1,
             "transmission_risk": k.transmission_risk_level,
             "days_since_onset": k.days_since_onset_of_symptoms, "source": "import",
             "import_id": batch.id, "case_id": None, "created_at": now}
            for k in valid if (k.key_data, k.rolling_start_interval_number) not in known]
    if rows:
        session.execute(sa.insert(DiagnosisKey), rows)
    batch.keys = len(rows)
    return {"import_id": batch.id, "region": export.region, "keys": len(rows),
            "already_known": len(valid) - len(rows), "invalid": invalid,
            "signature_verified": verified, "start_timestamp": export.start_timestamp,
            "end_timestamp": export.end_timestamp}
