"""From token logs to the sightings the matching service matches: the clinic path.

- `through_outbox`: every token is synced at the end of the run into a real clinic outbox
  (host_tools.outbox, SQLite): one sync session per token, its records stored (each checked with
  tokenfw.records on the way in), then the outbox's upload batches (the JSON contract of the
  upload API) are validated with the service's own upload model and their records decoded and
  time-corrected with the service's own `correct_time`, as the upload endpoint does. Used for
  small communities (SQLite at ~10 us a record is minutes at 10,000 wearers).
- `through_codec`: the records are decoded with tokenfw.records (the same codec the outbox
  and the service use), keeping only those the matching can concern: records of the cases'
  and venue beacons' identifiers (a service loads those with an index lookup) and the cases'
  own logs. Tests check that both paths give the same outcome.

The simulated tokens' clocks are exact and set, so every correction is 0.
"""
from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np

from matching_service.matching import Sighting
from tokenfw import records

from host_tools.outbox import Outbox


def record(log, seq: int) -> bytes:
    """The 32 bytes of record `seq` (numbered from 1, as the token's store numbers them)."""
    return log.records[(seq - 1) * 32:seq * 32]


def _sighting(serial: str, seq: int, enc, first_seen: int) -> Sighting:
    return Sighting(serial, seq, enc.rpi, enc.aem, first_seen, enc.duration_s, enc.scans,
                    enc.rssi_max, enc.rssi_mean, enc.flags)


def through_outbox(logs, serials: list[str], synced_at: int, folder: str | None = None) -> list[Sighting]:
    from matching_service.uploads.service import Upload, correct_time

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        with Outbox(Path(tmp) / "outbox.db") as outbox:
            for log in logs:
                serial = serials[log.token]
                session = outbox.begin_sync(serial, port="simulation", synced_at=synced_at,
                                            token_time=synced_at, correction_s=0, clock_was_set=True,
                                            clock_set=True, boundary_seq=log.count + 1)
                chunk = [(seq, record(log, seq)) for seq in range(1, log.count + 1)]
                for i in range(0, len(chunk), 2000):
                    outbox.store_chunk(session, chunk[i:i + 2000])
                outbox.finish_sync(session, acked_seq=log.count or None)
            sightings = []
            for batch in outbox.upload_batches(max_records=1_000_000):
                upload = Upload.model_validate(batch.payload)
                syncs = sorted(upload.syncs, key=lambda s: s.synced_at)
                for rec in upload.records:
                    sync = next(s for s in syncs if s.first_seq <= rec.seq <= s.last_seq)
                    data = rec.data if isinstance(rec.data, bytes) else base64.b64decode(rec.data)
                    enc = records.decode(rec.seq, data)
                    sightings.append(_sighting(upload.token, rec.seq, enc,
                                               correct_time(enc.first_seen, sync, None, enc.flags)))
                outbox.mark_uploaded(batch)
    return sightings


def through_codec(logs, serials: list[str], wanted_prefixes: np.ndarray, case_tokens: set[int]) -> list[Sighting]:
    wanted = np.unique(wanted_prefixes)
    blob = b"".join(log.records for log in logs)
    owner = np.repeat(np.arange(len(logs)), [log.count for log in logs])
    seq = np.concatenate([np.arange(1, log.count + 1) for log in logs]) if logs else np.zeros(0, np.int64)
    prefix = np.frombuffer(blob, dtype="<u8").reshape(-1, 4)[:, 0] if blob else np.zeros(0, "<u8")
    keep = np.isin(prefix, wanted)
    keep |= np.isin(np.array([log.token for log in logs])[owner], np.array(sorted(case_tokens)))
    sightings = []
    for k in np.flatnonzero(keep).tolist():
        log = logs[owner[k]]
        s = int(seq[k])
        enc = records.decode(s, blob[32 * k:32 * k + 32])
        sightings.append(_sighting(serials[log.token], s, enc, enc.first_seen))
    return sightings
