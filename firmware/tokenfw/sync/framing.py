# Frames of the sync protocol: CRC-protected bodies, byte-stuffed, between END delimiters.
#
# Wire form of one frame:   END  stuff(body || crc32(body) u32 LE)  END
#
# Stuffing is SLIP's, extended so that the control bytes a console might act on never appear
# on the wire in either direction:
#   0x03  Ctrl-C: KeyboardInterrupt on an ESP32 USB console and on the virtual token's pty;
#   0x04  Ctrl-D: soft reset, should the bytes reach a plain REPL;
#   0x11, 0x13  XON/XOFF, in case a link has software flow control on;
#   0x1A, 0x1C  SUSP and QUIT: signals on a pty whose line discipline has ISIG set.
# Each of them, END and ESC, is sent as ESC followed by a code byte; no code byte is ESC, so
# every ESC on the wire starts a pair and the stuffing is undone with a few bytes.replace()
# calls (C speed on MicroPython; a per-byte Python loop is far too slow on an ESP32).
#
# Only the host -> token direction must avoid the control bytes: the host reads its port in raw
# mode and acts on none of them. The token therefore stuffs its answers minimally (END and ESC
# only, `controls=False`), which saves ~3 % of the line on a DUMP; one decoder reads both.
#
# Edge cases: bytes outside frames (REPL text, log lines, line noise) are skipped; an empty or
# garbled segment between two ENDs fails its CRC and is counted, never raised to the caller of
# feed(); a frame longer than the reader's limit is dropped whole, up to the next END.
import struct

from binascii import crc32  # in every MicroPython port we target, and in CPython

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

END = const(0xC0)
ESC = const(0xDB)
_END_B = b"\xc0"

# (raw byte, code byte sent after ESC). ESC itself must be undone last when decoding.
_STUFFED = (
    (b"\xc0", b"\xdb\xdc"),
    (b"\x03", b"\xdb\xde"),
    (b"\x04", b"\xdb\xdf"),
    (b"\x11", b"\xdb\xe0"),
    (b"\x13", b"\xdb\xe1"),
    (b"\x1a", b"\xdb\xe2"),
    (b"\x1c", b"\xdb\xe3"),
)
_ESC_RAW = b"\xdb"
_ESC_CODED = b"\xdb\xdd"

# Bytes that must never be on the wire (apart from END as the delimiter).
FORBIDDEN_ON_WIRE = b"\x03\x04\x11\x13\x1a\x1c"


def crc(data, value=0):
    """CRC-32 of `data`, continuing from `value` (so a frame can be checked piece by piece)."""
    return crc32(data, value) & 0xFFFFFFFF


_crc = crc


def stuff(data, controls=True):
    out = bytes(data).replace(_ESC_RAW, _ESC_CODED)
    for raw, coded in (_STUFFED if controls else _STUFFED[:1]):
        out = out.replace(raw, coded)
    return out


def unstuff(data):
    out = bytes(data)
    for raw, coded in _STUFFED:
        out = out.replace(coded, raw)
    return out.replace(_ESC_CODED, _ESC_RAW)


def encode(body, controls=True):
    """The wire bytes of one frame carrying `body` (`controls`: escape the console control
    bytes too; always so from host to token)."""
    body = bytes(body)
    return _END_B + stuff(body + struct.pack("<I", _crc(body)), controls) + _END_B


def write_frame(write, body, piece=256, controls=True):
    """Send the frame carrying `body` (bytes, bytearray or memoryview) through `write` in
    pieces of `piece` body bytes: the same wire bytes as encode(body) without ever holding a
    stuffed copy of a big body (a 4 KB DUMP answer on a 100 KB heap). Stuffing maps each byte
    on its own, so stuffing slices one by one equals stuffing the whole."""
    view = memoryview(body)
    n = len(view)
    write(_END_B)
    for start in range(0, n, piece):
        write(stuff(view[start:start + piece], controls))
    write(stuff(struct.pack("<I", _crc(view)), controls) + _END_B)


def decode(segment):
    """The body carried by `segment` (wire bytes between two ENDs), or None when it is not a
    valid frame (too short, bad CRC, broken stuffing)."""
    if len(segment) < 5:
        return None
    raw = unstuff(segment)
    if len(raw) < 5:
        return None
    body = raw[:-4]
    if struct.unpack("<I", raw[-4:])[0] != _crc(body):
        return None
    return body


class FrameReader:
    """Accumulates received bytes in one fixed buffer and hands out frame bodies.

    `limit` bounds the wire bytes kept for one frame (RAM is fixed on a token). Counters:
    `bad` frames that failed their check, `overflows` frames dropped for being too long.
    """

    def __init__(self, limit):
        self.limit = limit
        self._buf = bytearray(limit)
        self._len = 0
        self._skipping = False  # inside an oversized frame: drop until the next END
        self.bad = 0
        self.overflows = 0

    def reset(self):
        self._len = 0
        self._skipping = False

    def feed(self, data, on_body):
        """Consume `data`; call `on_body(body)` for every valid frame completed by it."""
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        start = 0
        n = len(data)
        while start < n:
            end = data.find(_END_B, start)
            if end < 0:
                self._append(data, start, n)
                return
            self._append(data, start, end)
            start = end + 1
            if self._skipping:
                self._skipping = False
                self._len = 0
                continue
            if self._len:
                segment = bytes(memoryview(self._buf)[:self._len])
                self._len = 0
                body = decode(segment)
                if body is None:
                    self.bad += 1
                else:
                    on_body(body)

    def _append(self, data, start, end):
        if self._skipping or end <= start:
            return
        size = end - start
        if self._len + size > self.limit:
            self._skipping = True
            self.overflows += 1
            self._len = 0
            return
        self._buf[self._len:self._len + size] = memoryview(data)[start:end]
        self._len += size
