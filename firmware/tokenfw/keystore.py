# The token's own Temporary Exposure Keys on flash, kept 21 days (docs/storage.md).
#
# A separate module from tokenfw.store so that each compiles within the device's small heap.
import os
import struct

from tokenfw import records

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_KEY_ENTRY = const(24)  # tek 16 | rolling start interval u32 | CRC-32 of the first 20 bytes u32
_INTERVALS_PER_DAY = const(144)
KEY_RETENTION_DAYS = const(21)


def _crc(data):
    return records._crc32(data) & 0xFFFFFFFF


class KeyStore:
    # The token's own Temporary Exposure Keys, 21 days of them, in one small file rewritten
    # atomically (temporary file + rename) on every change: at most one write a day.
    #
    # put(tek, start_interval), get(start_interval) -> tek | None,
    # since(enin) -> [(tek, start_interval)] oldest first, entries(), prune(enin), wipe().

    def __init__(self, path="/keys.bin", retention_days=KEY_RETENTION_DAYS):
        self.path = path
        self.retention_days = retention_days
        self.corrupt_skipped = 0

    def entries(self):
        # All stored (tek, start_interval), oldest first. A corrupt entry is skipped.
        found = []
        buf = bytearray(_KEY_ENTRY)
        try:
            f = open(self.path, "rb")
        except OSError:
            return found
        try:
            while f.readinto(buf) == _KEY_ENTRY:
                tek, start, check = struct.unpack("<16sII", buf)
                if _crc(bytes(buf[:20])) != check:
                    self.corrupt_skipped += 1
                    continue
                found.append((tek, start))
        finally:
            f.close()
        found.sort(key=lambda entry: entry[1])
        return found

    def get(self, start_interval):
        for tek, start in self.entries():
            if start == start_interval:
                return tek
        return None

    def since(self, enin):
        # Keys valid at or after interval `enin` (their day has not ended before it).
        return [e for e in self.entries() if e[1] + _INTERVALS_PER_DAY > enin]

    def put(self, tek, start_interval):
        # Store (or replace) the key starting at `start_interval`; keys more than the
        # retention period older than the newest one are dropped.
        if len(tek) != 16 or not isinstance(start_interval, int) or start_interval < 0:
            raise ValueError("a TEK is 16 bytes with a non-negative start interval")
        kept = [e for e in self.entries() if e[1] != start_interval]
        kept.append((bytes(tek), start_interval))
        newest = max(e[1] for e in kept)
        self._write(kept, newest)

    def prune(self, enin):
        # Drop keys older than the retention period at interval `enin`.
        kept = self.entries()
        before = len(kept)
        self._write(kept, enin, only_if_changed=before)

    def _write(self, entries, newest, only_if_changed=None):
        oldest = newest - self.retention_days * _INTERVALS_PER_DAY
        entries = [e for e in entries if e[1] > oldest]
        if only_if_changed is not None and len(entries) == only_if_changed:
            return
        entries.sort(key=lambda entry: entry[1])
        temporary = self.path + ".tmp"
        with open(temporary, "wb") as f:
            for tek, start in entries:
                body = struct.pack("<16sI", tek, start)
                f.write(body + struct.pack("<I", _crc(body)))
        os.rename(temporary, self.path)

    def wipe(self):
        try:
            os.remove(self.path)
        except OSError:
            pass
