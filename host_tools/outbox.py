"""The clinic outbox: a local SQLite database (WAL) of everything dumped from tokens.

What it holds:
- `records`: every dumped 32-byte record, keyed by (token serial, sequence number): storing the
  same record twice (a re-sent dump after a crash between storing and ACK) is a no-op;
- `syncs`: one row per sync session: when, the token's clock before it was set, the correction
  (host minus token, seconds), whether the clock had ever been set, and the sequence number at
  which the clock changed (`boundary_seq`), so that every record gets the correction of the
  clock that stamped it;
- `provisions`: tokens provisioned here, awaiting registration with the service;
- upload state: `uploaded_at` on records and provisions.

Durability rule: a chunk is committed (synchronous=FULL, so on disk) before the caller may ACK
it to the token. Nothing dumped is lost before it is uploaded, whatever is interrupted.

Upload format (contract with the service):
    {"token": SERIAL, "records": [{"seq": N, "data": BASE64}...],
     "syncs": [{"synced_at", "token_time", "correction_s", "clock_was_set", "first_seq", "last_seq"}]}
A `syncs` entry says: records first_seq..last_seq were stamped by a clock that was off by
correction_s. Entries never overlap; see `_correction_ranges`.
"""
from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenfw import records as record_codec

from host_tools.errors import TokenToolError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL,
    port TEXT,
    started_at REAL NOT NULL,
    synced_at INTEGER NOT NULL,        -- host unix s when the token clock was read/set
    token_time INTEGER NOT NULL,       -- token clock at that moment, before any correction
    correction_s INTEGER NOT NULL,     -- host minus token
    clock_was_set INTEGER NOT NULL,    -- had a host ever set the token clock before?
    clock_set INTEGER NOT NULL,        -- did this sync set it?
    boundary_seq INTEGER NOT NULL,     -- token's next seq when the clock was read/set
    first_seq INTEGER,                 -- records stored by this sync
    last_seq INTEGER,
    stored INTEGER NOT NULL DEFAULT 0, -- records dumped (duplicates included)
    new_records INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0,
    acked_seq INTEGER,
    status TEXT NOT NULL,              -- dumping | complete | failed
    error TEXT,
    finished_at REAL,
    firmware TEXT,
    battery_percent INTEGER,
    pending_before INTEGER
);
CREATE INDEX IF NOT EXISTS syncs_serial ON syncs(serial, id);
CREATE TABLE IF NOT EXISTS records (
    serial TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL CHECK (length(data) = 32),
    sync_id INTEGER NOT NULL REFERENCES syncs(id),
    stored_at REAL NOT NULL,
    uploaded_at REAL,
    PRIMARY KEY (serial, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_not_uploaded ON records(serial, seq) WHERE uploaded_at IS NULL;
CREATE TABLE IF NOT EXISTS provisions (
    serial TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    identity TEXT NOT NULL,
    board TEXT,
    tx_power_dbm INTEGER,
    firmware TEXT,
    provisioned_at REAL NOT NULL,
    registered_at REAL
);
"""


class OutboxError(TokenToolError):
    pass


def default_home() -> Path:
    return Path(os.environ.get("TOKENTOOL_HOME") or Path.home() / ".local" / "share" / "tokentool")


def default_path() -> Path:
    return Path(os.environ.get("TOKENTOOL_OUTBOX") or default_home() / "outbox.sqlite")


@dataclass
class SyncSession:
    id: int
    serial: str
    boundary_seq: int
    correction_s: int


@dataclass
class StoreResult:
    new: int
    duplicates: int
    conflicts: int


@dataclass
class UploadBatch:
    serial: str
    seqs: list[int]
    payload: dict


class Outbox:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before we ACK
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise OutboxError(f"cannot open the clinic outbox {self.path}: {error}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- syncs -------------------------------------------------------------------------------
    def begin_sync(self, serial: str, *, port: str, synced_at: int, token_time: int, correction_s: int,
                   clock_was_set: bool, clock_set: bool, boundary_seq: int, firmware: str | None = None,
                   battery_percent: int | None = None, pending_before: int | None = None) -> SyncSession:
        cur = self.db.execute(
            "INSERT INTO syncs (serial, port, started_at, synced_at, token_time, correction_s, clock_was_set,"
            " clock_set, boundary_seq, status, firmware, battery_percent, pending_before)"
            " VALUES (?,?,?,?,?,?,?,?,?, 'dumping', ?,?,?)",
            (serial, port, time.time(), synced_at, token_time, correction_s, int(clock_was_set), int(clock_set),
             boundary_seq, firmware, battery_percent, pending_before))
        return SyncSession(cur.lastrowid, serial, boundary_seq, correction_s)

    def store_chunk(self, session: SyncSession, chunk: Iterable[tuple[int, bytes]]) -> StoreResult:
        """Store dumped records durably (one transaction). Records failing their check are
        refused before anything is written; a record already stored is skipped."""
        rows = []
        for seq, data in chunk:
            record_codec.decode(seq, data)  # raises CorruptRecord: never store damaged data
            rows.append((seq, bytes(data)))
        if not rows:
            return StoreResult(0, 0, 0)
        now = time.time()
        new = duplicates = conflicts = 0
        with self._transaction():
            for seq, data in rows:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO records (serial, seq, data, sync_id, stored_at) VALUES (?,?,?,?,?)",
                    (session.serial, seq, data, session.id, now))
                if cur.rowcount:
                    new += 1
                    continue
                (existing,) = self.db.execute(
                    "SELECT data FROM records WHERE serial=? AND seq=?", (session.serial, seq)).fetchone()
                if existing == data:
                    duplicates += 1
                else:
                    conflicts += 1  # keep what we have: the first copy passed its check too
            self.db.execute(
                "UPDATE syncs SET stored = stored + ?, new_records = new_records + ?, conflicts = conflicts + ?,"
                " first_seq = COALESCE(MIN(first_seq, ?), ?), last_seq = COALESCE(MAX(last_seq, ?), ?) WHERE id = ?",
                (len(rows), new, conflicts, rows[0][0], rows[0][0], rows[-1][0], rows[-1][0], session.id))
        return StoreResult(new, duplicates, conflicts)

    def finish_sync(self, session: SyncSession, *, acked_seq: int | None, status: str = "complete",
                    error: str | None = None) -> None:
        with self._transaction():
            self.db.execute("UPDATE syncs SET acked_seq=?, status=?, error=?, finished_at=? WHERE id=?",
                            (acked_seq, status, error, time.time(), session.id))

    def resume_point(self, serial: str, token_acked: int, token_next: int) -> int:
        """First seq to dump: after the token's ACK cursor and after every record we already
        hold contiguously beyond it (a dump cut short is resumed, not repeated)."""
        start = token_acked + 1
        rows = self.db.execute(
            "SELECT seq FROM records WHERE serial=? AND seq>=? AND seq<? ORDER BY seq", (serial, start, token_next))
        for (seq,) in rows:
            if seq != start:
                break
            start += 1
        return start

    def highest_seq(self, serial: str) -> int | None:
        (value,) = self.db.execute("SELECT MAX(seq) FROM records WHERE serial=?", (serial,)).fetchone()
        return value

    # ---- provisioning ----------------------------------------------------------------------------
    def add_provision(self, serial: str, *, role: str, identity: str, board: str | None,
                      tx_power_dbm: int | None, firmware: str | None) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO provisions (serial, role, identity, board, tx_power_dbm, firmware,"
                " provisioned_at, registered_at) VALUES (?,?,?,?,?,?,?,NULL)",
                (serial, role, identity, board, tx_power_dbm, firmware, time.time()))

    def unregistered(self) -> list[dict]:
        """Provisioned tokens not yet registered with the service (secrets: see Keystore)."""
        rows = self.db.execute(
            "SELECT serial, role, identity, board, tx_power_dbm, firmware, provisioned_at FROM provisions"
            " WHERE registered_at IS NULL ORDER BY provisioned_at")
        keys = ("serial", "role", "identity", "board", "tx_power_dbm", "firmware", "provisioned_at")
        return [dict(zip(keys, row)) for row in rows]

    def mark_registered(self, serial: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE provisions SET registered_at=? WHERE serial=?", (time.time(), serial))

    # ---- upload --------------------------------------------------------------------------------
    def upload_batches(self, max_records: int = 5000) -> Iterator[UploadBatch]:
        """Records not uploaded yet, one batch per token (at most max_records each), in the
        upload format. Call mark_uploaded(batch) once the service has accepted a batch."""
        serials = [row[0] for row in self.db.execute(
            "SELECT DISTINCT serial FROM records WHERE uploaded_at IS NULL ORDER BY serial")]
        for serial in serials:
            rows = self.db.execute(
                "SELECT seq, data FROM records WHERE serial=? AND uploaded_at IS NULL ORDER BY seq LIMIT ?",
                (serial, max_records)).fetchall()
            if not rows:
                continue
            seqs = [seq for seq, _ in rows]
            ranges = [r for r in self._correction_ranges(serial)
                      if r["last_seq"] >= seqs[0] and r["first_seq"] <= seqs[-1]]
            payload = {
                "token": serial,
                "records": [{"seq": seq, "data": base64.b64encode(data).decode()} for seq, data in rows],
                "syncs": ranges,
            }
            yield UploadBatch(serial, seqs, payload)

    def mark_uploaded(self, batch: UploadBatch) -> None:
        now = time.time()
        with self._transaction():
            self.db.executemany("UPDATE records SET uploaded_at=? WHERE serial=? AND seq=?",
                                [(now, batch.serial, seq) for seq in batch.seqs])

    def _correction_ranges(self, serial: str) -> list[dict]:
        """Which clock correction applies to which records of one token.

        Sync k read the token clock when the token's next seq was boundary_seq b_k and found it
        off by c_k. Records below b_k not covered by an earlier sync were stamped by that clock:
        they get c_k. If sync k also set the clock, the records it dumped from b_k on were
        stamped by the corrected clock: correction 0. Later records belong to the next sync.
        """
        out: list[dict] = []
        covered = 0  # highest seq already given a correction
        rows = self.db.execute(
            "SELECT synced_at, token_time, correction_s, clock_was_set, clock_set, boundary_seq, last_seq"
            " FROM syncs WHERE serial=? ORDER BY id", (serial,))
        for synced_at, token_time, correction, was_set, did_set, boundary, last_seq in rows:
            if boundary - 1 > covered:
                out.append({"synced_at": synced_at, "token_time": token_time, "correction_s": correction,
                            "clock_was_set": bool(was_set), "first_seq": covered + 1, "last_seq": boundary - 1})
                covered = boundary - 1
            if last_seq is not None and last_seq > covered:
                after = 0 if did_set else correction
                out.append({"synced_at": synced_at, "token_time": synced_at - after,
                            "correction_s": after, "clock_was_set": bool(was_set or did_set),
                            "first_seq": covered + 1, "last_seq": last_seq})
                covered = last_seq
        return out

    # ---- listing -------------------------------------------------------------------------------
    def sync_rows(self, serial: str | None = None) -> list[dict]:
        query = ("SELECT id, serial, port, started_at, synced_at, token_time, correction_s, clock_was_set,"
                 " clock_set, boundary_seq, first_seq, last_seq, stored, new_records, conflicts, acked_seq,"
                 " status, error, finished_at, firmware, battery_percent, pending_before FROM syncs")
        args: tuple = ()
        if serial:
            query += " WHERE serial=?"
            args = (serial,)
        cur = self.db.execute(query + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def summary(self) -> list[dict]:
        """Per token: records held, not uploaded, last sync."""
        cur = self.db.execute(
            "SELECT r.serial, COUNT(*), SUM(r.uploaded_at IS NULL), MIN(r.seq), MAX(r.seq),"
            " (SELECT MAX(s.synced_at) FROM syncs s WHERE s.serial = r.serial),"
            " (SELECT s.correction_s FROM syncs s WHERE s.serial = r.serial ORDER BY s.id DESC LIMIT 1)"
            " FROM records r GROUP BY r.serial ORDER BY r.serial")
        keys = ("serial", "records", "not_uploaded", "first_seq", "last_seq", "last_sync_at", "last_correction_s")
        return [dict(zip(keys, row)) for row in cur]

    def records_of(self, serial: str | None = None) -> Iterator[tuple[str, int, bytes, float | None, int]]:
        """(serial, seq, data, uploaded_at, sync_id) in order."""
        query = "SELECT serial, seq, data, uploaded_at, sync_id FROM records"
        args: tuple = ()
        if serial:
            query += " WHERE serial=?"
            args = (serial,)
        yield from self.db.execute(query + " ORDER BY serial, seq", args)

    def correction_for(self, serial: str, seq: int) -> int | None:
        for entry in self._correction_ranges(serial):
            if entry["first_seq"] <= seq <= entry["last_seq"]:
                return entry["correction_s"]
        return None

    # ---- plumbing ------------------------------------------------------------------------------
    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
