# The token's own error and event log: a bounded ring on flash (docs/storage.md).
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


def _crc(data):
    return records._crc32(data) & 0xFFFFFFFF


_EVENT_SLOT = const(64)  # seq u32 | time u32 | code 12 bytes | detail 40 bytes | CRC-32 u32
_EVENT_FORMAT = "<II12s40s"
_EVENT_BODY = const(60)


class EventLog:
    # A bounded ring of (time, code, detail) entries: the token's own error and event log.
    #
    # One file of `capacity` fixed 64-byte slots; entry n goes to slot (n - 1) % capacity,
    # written in place, so the file never grows past capacity * 64 bytes and the newest entries
    # win. The head is found at open by the highest intact entry number. `code` is a short name
    # (<= 12 bytes, e.g. "torn_tail"), `detail` free text cut to 40 bytes.

    def __init__(self, path="/events.bin", capacity=64, clock=None):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.path = path
        self.capacity = capacity
        self.clock = clock  # optional callable returning unix seconds
        self._slot = bytearray(_EVENT_SLOT)
        self.next_seq = 1
        buf = self._slot
        try:
            f = open(path, "rb")
        except OSError:
            return
        try:
            while f.readinto(buf) == _EVENT_SLOT:
                seq = self._intact_seq(buf)
                if seq is not None and seq >= self.next_seq:
                    self.next_seq = seq + 1
        finally:
            f.close()

    @staticmethod
    def _intact_seq(buf):
        seq = struct.unpack_from("<I", buf, 0)[0]
        check = struct.unpack_from("<I", buf, _EVENT_BODY)[0]
        if seq == 0 or _crc(bytes(buf[:_EVENT_BODY])) != check:
            return None
        return seq

    def log(self, code, detail="", now=None):
        # Add one entry; returns its number. Never raises for a full or failing flash (the
        # event log must not stop the token): returns 0 then.
        if now is None:
            now = self.clock() if self.clock is not None else 0
        if not isinstance(code, bytes):
            code = str(code).encode()
        if not isinstance(detail, bytes):
            detail = str(detail).encode()
        seq = self.next_seq
        body = struct.pack(_EVENT_FORMAT, seq, int(now) & 0xFFFFFFFF, code[:12], detail[:40])
        entry = body + struct.pack("<I", _crc(body))
        try:
            try:
                f = open(self.path, "r+b")
            except OSError:
                f = open(self.path, "wb")
            try:
                f.seek(((seq - 1) % self.capacity) * _EVENT_SLOT)
                f.write(entry)
            finally:
                f.close()
        except OSError:
            return 0
        self.next_seq = seq + 1
        return seq

    def records(self, from_seq=1):
        # Yield (seq, time, code, detail) for intact entries with seq >= from_seq, oldest first.
        first = max(from_seq, self.next_seq - self.capacity, 1)
        buf = self._slot
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        try:
            for seq in range(first, self.next_seq):
                f.seek(((seq - 1) % self.capacity) * _EVENT_SLOT)
                if f.readinto(buf) != _EVENT_SLOT or self._intact_seq(buf) != seq:
                    continue
                _, now, code, detail = struct.unpack(_EVENT_FORMAT, bytes(buf[:_EVENT_BODY]))
                yield seq, now, _text(code), _text(detail)
        finally:
            f.close()

    def entries(self):
        # Yield (time, code, detail), oldest first.
        for _, now, code, detail in self.records():
            yield now, code, detail

    def wipe(self):
        try:
            os.remove(self.path)
        except OSError:
            pass
        self.next_seq = 1


def _text(raw):
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    for cut in range(4):  # a multi-byte character may have been cut at the slot's end
        try:
            return raw[:len(raw) - cut].decode()
        except UnicodeError:
            pass
    return "?"
