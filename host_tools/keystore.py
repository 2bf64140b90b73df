"""The clinic keystore: per-token secrets created at provisioning (auth key, escrow seed).

A separate SQLite file from the outbox, readable by its owner only (mode 0600): the outbox can
be exported and shared for support; the keystore never. `tokentool` reads a token's auth key
here for the privileged commands (KEYS, WIPE, re-PROVISION); the registration step sends the
seed of escrowed tokens to the service.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from host_tools.errors import TokenToolError
from host_tools.outbox import default_home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    serial TEXT PRIMARY KEY,
    auth_key BLOB NOT NULL CHECK (length(auth_key) = 32),
    seed BLOB CHECK (seed IS NULL OR length(seed) = 16),
    role TEXT NOT NULL,
    identity TEXT NOT NULL,
    tx_power_dbm INTEGER,
    board TEXT,
    created_at REAL NOT NULL
);
"""


class KeystoreError(TokenToolError):
    pass


def default_path() -> Path:
    return Path(os.environ.get("TOKENTOOL_KEYSTORE") or default_home() / "keystore.sqlite")


@dataclass
class TokenSecrets:
    serial: str
    auth_key: bytes
    seed: bytes | None
    role: str
    identity: str
    tx_power_dbm: int | None
    board: str | None


class Keystore:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            # a private directory: SQLite's -wal/-shm files beside the database hold secrets too
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # create it private before any secret is written into it
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise KeystoreError(f"cannot open the clinic keystore {self.path}: {error}") from None

    def close(self) -> None:
        self.db.close()

    def add(self, secrets: TokenSecrets) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO tokens (serial, auth_key, seed, role, identity, tx_power_dbm, board, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (secrets.serial, secrets.auth_key, secrets.seed, secrets.role, secrets.identity,
             secrets.tx_power_dbm, secrets.board, time.time()))

    def get(self, serial: str) -> TokenSecrets | None:
        row = self.db.execute(
            "SELECT serial, auth_key, seed, role, identity, tx_power_dbm, board FROM tokens WHERE serial=?",
            (serial,)).fetchone()
        return TokenSecrets(*row) if row else None

    def auth_key(self, serial: str) -> bytes:
        found = self.get(serial)
        if found is None:
            raise KeystoreError(
                f"no auth key for token {serial} in the clinic keystore {self.path}; "
                "use the keystore of the clinic that provisioned it")
        return found.auth_key

    def serials(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT serial FROM tokens ORDER BY serial")]
