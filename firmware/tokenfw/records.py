# The encounter record: one fixed-size, self-checking 32-byte entry in the token's flash log.
#
# One definition for token and host: the firmware writes records with it, tokentool and the
# matching service read them with it. Layout and rationale: docs/records.md.
#
#   0  rpi         16 bytes  Rolling Proximity Identifier heard
#  16  aem          4 bytes  Associated Encrypted Metadata heard with it
#  20  first_seen  u32       token clock, unix seconds, when the RPI was first heard
#  24  duration_s  u16       seconds from first to last sighting
#  26  scans       u8        scan windows in which it was heard (saturates at 255)
#  27  rssi_max    i8        strongest RSSI, dBm
#  28  rssi_mean   i8        mean RSSI over all sightings, dBm
#  29  flags       u8        FLAG_* below
#  30  check       u16       low 16 bits of CRC-32(seq u32 LE || bytes 0..29)
#
# The sequence number is not stored: it is the record's position in the log. The check covers
# it, so a record read back at the wrong position (a torn segment, a renamed file) fails.
import struct

try:
    from binascii import crc32
except ImportError:  # ports built without binascii.crc32
    crc32 = None

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

try:
    from collections import namedtuple
except ImportError:
    from ucollections import namedtuple

RECORD_SIZE = const(32)
_BODY_SIZE = const(30)
_BODY_FORMAT = "<16s4sIHBbbB"

# Token clock was never set by a host when this record was made: first_seen counts from the
# token's own epoch; the service corrects it with the offset the next sync measured.
FLAG_CLOCK_UNSET = const(0x01)
# Closed early because the table of open encounters was full (a crowd larger than it holds).
FLAG_EVICTED = const(0x02)

Encounter = namedtuple(
    "Encounter", ("rpi", "aem", "first_seen", "duration_s", "scans", "rssi_max", "rssi_mean", "flags")
)


class CorruptRecord(ValueError):
    """A record whose bytes do not match its check (or are the wrong size)."""


def _crc32(data, value=0):
    if crc32 is not None:
        return crc32(data, value)
    value = value ^ 0xFFFFFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ (0xEDB88320 & -(value & 1))
    return value ^ 0xFFFFFFFF


def _check(seq, body):
    return _crc32(body, _crc32(struct.pack("<I", seq & 0xFFFFFFFF))) & 0xFFFF


def _clamp(value, low, high):
    return low if value < low else high if value > high else value


def encode(seq, enc):
    """32 bytes for encounter `enc` stored at sequence number `seq`. Out-of-range counters
    saturate rather than wrap, so a long contact never looks short."""
    body = struct.pack(
        _BODY_FORMAT,
        enc.rpi, enc.aem,
        enc.first_seen & 0xFFFFFFFF,
        _clamp(enc.duration_s, 0, 0xFFFF),
        _clamp(enc.scans, 0, 0xFF),
        _clamp(enc.rssi_max, -128, 127),
        _clamp(enc.rssi_mean, -128, 127),
        enc.flags & 0xFF,
    )
    return body + struct.pack("<H", _check(seq, body))


def is_intact(seq, buf):
    """True when `buf` is a well-formed record for position `seq`."""
    if len(buf) != RECORD_SIZE:
        return False
    body = bytes(buf[:_BODY_SIZE])
    return struct.unpack("<H", bytes(buf[_BODY_SIZE:]))[0] == _check(seq, body)


def decode(seq, buf):
    """The Encounter stored in `buf` at position `seq`; raises CorruptRecord if it fails its check."""
    if not is_intact(seq, buf):
        raise CorruptRecord("record %d fails its integrity check" % seq)
    return Encounter(*struct.unpack(_BODY_FORMAT, bytes(buf[:_BODY_SIZE])))
