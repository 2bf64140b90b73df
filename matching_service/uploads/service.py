"""Storing a clinic upload: validate everything, then store new records idempotently.

Idempotent by (token, sequence number): a replayed upload stores nothing new and says so. A
record whose bytes differ from the stored one at the same sequence number is never overwritten;
it is reported as a conflict (and audited) so a re-flashed token cannot rewrite history.

Times: records carry the token's own clock. Each sync session reports the correction the clinic
measured (host - token). The token clock was right at the previous sync (the host set it), so
the error grows from 0 then to `correction_s` now; records are corrected by interpolating
linearly between the two (drift), or by the whole correction when there is no earlier sync or
the clock had never been set.
"""
from __future__ import annotations

import time

import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.orm import Session

from tokenfw import records as record_codec

from matching_service import InvalidInput, RequestError
from matching_service.db import insert_ignoring_duplicates
from matching_service.registry.service import get_device
from matching_service.schemas import Serial, Strict, UInt32, UnixTime, b64_of_length, decode_base64
from matching_service.uploads.models import EncounterRecord, SyncSession

MAX_CORRECTION_S = 1 << 40
# The clinic computer's clock sets the tokens' clocks: one far ahead would date everything wrong.
MAX_HOST_CLOCK_AHEAD_S = 3600


class TooLarge(RequestError):
    status = 413
    code = "too_large"


class RecordIn(Strict):
    seq: UInt32
    data: b64_of_length(record_codec.RECORD_SIZE)


class SyncIn(Strict):
    synced_at: UnixTime
    token_time: int = Field(ge=-MAX_CORRECTION_S, le=MAX_CORRECTION_S)
    correction_s: int = Field(ge=-MAX_CORRECTION_S, le=MAX_CORRECTION_S)
    clock_was_set: bool
    first_seq: UInt32
    last_seq: UInt32

    @model_validator(mode="after")
    def _ordered(self):
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq is before first_seq")
        return self


class Upload(Strict):
    token: Serial
    records: list[RecordIn] = Field(default_factory=list)
    # A batch spans a few syncs (one per clinic visit since the last upload): 1,000 is generous.
    syncs: list[SyncIn] = Field(default_factory=list, max_length=1000)


# Crystal drift is tens of ppm (seconds a day); a larger offset is a step (a reset clock), where
# interpolating would smear it over records stamped before the step.
MAX_DRIFT_CORRECTION_S = 600


def correct_time(first_seen: int, sync: SyncIn | SyncSession, previous_synced_at: int | None,
                 flags: int = 0) -> int:
    """True (host) time for a token time `first_seen` dumped at `sync`."""
    if (previous_synced_at is None or not sync.clock_was_set
            or flags & record_codec.FLAG_CLOCK_UNSET
            or abs(sync.correction_s) > MAX_DRIFT_CORRECTION_S
            or sync.token_time <= previous_synced_at):
        return first_seen + sync.correction_s
    span = sync.token_time - previous_synced_at
    fraction = min(1.0, max(0.0, (first_seen - previous_synced_at) / span))
    return first_seen + round(sync.correction_s * fraction)


def store_upload(session: Session, upload: Upload, by: str, max_records: int) -> dict:
    """Validate and store `upload`. Raises InvalidInput/TooLarge/NotFound with nothing stored."""
    if len(upload.records) > max_records:
        raise TooLarge(f"an upload holds at most {max_records} records, this one has "
                       f"{len(upload.records)}: split it into batches")
    device = get_device(session, upload.token)
    serial = device.serial
    seqs = [r.seq for r in upload.records]
    if len(set(seqs)) != len(seqs):
        raise InvalidInput("the upload repeats a sequence number")
    if upload.records and not upload.syncs:
        raise InvalidInput("records need the sync session that dumped them")

    now = int(time.time())
    for sync in upload.syncs:
        if sync.synced_at > now + MAX_HOST_CLOCK_AHEAD_S:
            raise InvalidInput("a sync session is dated in the future: check the clinic "
                               "computer's clock before uploading", synced_at=sync.synced_at)

    # Each record belongs to the earliest sync whose range covers it (the one that dumped it).
    syncs = sorted(upload.syncs, key=lambda s: s.synced_at)
    decoded = []
    for record in upload.records:
        owner = next((s for s in syncs if s.first_seq <= record.seq <= s.last_seq), None)
        if owner is None:
            raise InvalidInput(f"record {record.seq} is not covered by any sync session",
                               seq=record.seq)
        try:
            encounter = record_codec.decode(record.seq, decode_base64(record.data))
        except record_codec.CorruptRecord:
            raise InvalidInput(f"record {record.seq} fails its integrity check", seq=record.seq)
        decoded.append((record, owner, encounter))

    # Sync sessions: store new ones, reuse identical stored ones (replays).
    stored_syncs = {(s.synced_at, s.first_seq, s.last_seq): s for s in session.scalars(
        sa.select(SyncSession).where(SyncSession.serial == serial))}
    sync_rows = {}
    new_syncs = 0
    for sync in syncs:
        identity = (sync.synced_at, sync.first_seq, sync.last_seq)
        row = stored_syncs.get(identity)
        if row is None:
            row = SyncSession(serial=serial, synced_at=sync.synced_at, token_time=sync.token_time,
                              correction_s=sync.correction_s, clock_was_set=sync.clock_was_set,
                              first_seq=sync.first_seq, last_seq=sync.last_seq,
                              uploaded_at=now, uploaded_by=by)
            session.add(row)
            stored_syncs[identity] = row
            new_syncs += 1
        sync_rows[id(sync)] = row
    session.flush()
    all_sync_times = sorted(s.synced_at for s in stored_syncs.values())

    def previous_sync_time(synced_at: int) -> int | None:
        earlier = [t for t in all_sync_times if t < synced_at]
        return earlier[-1] if earlier else None

    existing: dict[int, bytes] = {}
    if seqs:
        for seq, raw in session.execute(
                sa.select(EncounterRecord.seq, EncounterRecord.raw).where(
                    EncounterRecord.serial == serial,
                    EncounterRecord.seq.between(min(seqs), max(seqs)))):
            existing[seq] = bytes(raw)

    rows, duplicates, conflicts = [], 0, []
    for record, owner, enc in decoded:
        raw = decode_base64(record.data)
        if record.seq in existing:
            if existing[record.seq] == raw:
                duplicates += 1
            else:
                conflicts.append(record.seq)
            continue
        rows.append({
            "serial": serial, "seq": record.seq, "raw": raw, "rpi": bytes(enc.rpi),
            "aem": bytes(enc.aem), "first_seen_token": enc.first_seen,
            "first_seen": correct_time(enc.first_seen, owner, previous_sync_time(owner.synced_at),
                                       enc.flags),
            "duration_s": enc.duration_s, "scans": enc.scans, "rssi_max": enc.rssi_max,
            "rssi_mean": enc.rssi_mean, "flags": enc.flags, "sync_id": sync_rows[id(owner)].id,
        })
    inserted = insert_ignoring_duplicates(session, EncounterRecord.__table__, rows, ["serial", "seq"])
    duplicates += len(rows) - inserted  # a concurrent request stored them first
    return {"token": serial, "stored": inserted, "duplicates": duplicates,
            "conflicts": conflicts, "syncs_stored": new_syncs}


def token_summary(session: Session, serial: str) -> dict:
    count, first, last = session.execute(
        sa.select(sa.func.count(), sa.func.min(EncounterRecord.first_seen),
                  sa.func.max(EncounterRecord.first_seen)).where(EncounterRecord.serial == serial)).one()
    last_sync = session.scalar(sa.select(sa.func.max(SyncSession.synced_at)).where(
        SyncSession.serial == serial))
    max_seq = session.scalar(sa.select(sa.func.max(EncounterRecord.seq)).where(
        EncounterRecord.serial == serial))
    return {"records": count, "first_seen": first, "last_seen": last, "last_sync": last_sync,
            "max_seq": max_seq}


def sightings(session: Session, serials: list[str] | None = None, since: int | None = None,
              until: int | None = None) -> list[dict]:
    """Stored records as plain sightings for the matching engine."""
    query = sa.select(EncounterRecord)
    if serials is not None:
        query = query.where(EncounterRecord.serial.in_(serials))
    if since is not None:
        query = query.where(EncounterRecord.first_seen >= since)
    if until is not None:
        query = query.where(EncounterRecord.first_seen <= until)
    return [{"observer": r.serial, "seq": r.seq, "rpi": bytes(r.rpi), "aem": bytes(r.aem),
             "first_seen": r.first_seen, "duration_s": r.duration_s, "scans": r.scans,
             "rssi_max": r.rssi_max, "rssi_mean": r.rssi_mean, "flags": r.flags}
            for r in session.scalars(query.order_by(EncounterRecord.serial, EncounterRecord.seq))]
