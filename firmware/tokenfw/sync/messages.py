# Messages of the sync protocol: command numbers and the byte layout of every request and
# response body (docs/sync-protocol.md is the specification). This module holds the numbers,
# the layouts and what the token needs (parse requests, build answers); host_codec.py holds
# the other half (build requests, parse answers) so that the token never loads it into RAM.
# tokentool imports both.
#
# Frame body:   cmd u8 | req u8 | payload
#   cmd   a request's command number; a response carries cmd | 0x80, an error ERROR (0xFF)
#   req   request number chosen by the host, echoed in the response (matches pipelined and
#         retried requests to their answers)
# All integers are little-endian. Time values are unix seconds.
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

PROTOCOL_VERSION = const(1)
MAGIC = b"TTSYNC"

HELLO = const(0x01)
INFO = const(0x02)
TIME = const(0x03)
DUMP = const(0x04)
ACK = const(0x05)
CHALLENGE = const(0x06)
KEYS = const(0x07)
PROVISION = const(0x08)
WIPE = const(0x09)
EVENTS = const(0x0A)
RESPONSE = const(0x80)
ERROR = const(0xFF)

# Error codes carried by ERROR responses (code u8 | utf-8 message).
E_BAD_REQUEST = const(1)
E_UNKNOWN_COMMAND = const(2)
E_HELLO_FIRST = const(3)
E_VERSION = const(4)
E_AUTH = const(5)
E_NOT_PROVISIONED = const(6)
E_REFUSED = const(7)
E_INTERNAL = const(8)

# DUMP answers at most this many records per request; the host pulls chunk after chunk.
MAX_DUMP_RECORDS = const(64)
RECORD_SIZE = const(32)
MAC_SIZE = const(32)
NONCE_SIZE = const(16)
NO_SEQ = const(0xFFFFFFFF)  # "none" in u32 sequence fields (nothing acknowledged yet)

# Bounds on frame bodies: what a token accepts (small requests) and what a host accepts.
MAX_REQUEST_WIRE = const(1024)
MAX_RESPONSE_WIRE = const(12000)


class Refused(Exception):
    """Raised by the token's command handlers as Refused(code, message): answered as ERROR."""


def body(cmd, req, payload=b""):
    return bytes((cmd, req & 0xFF)) + payload


def error_payload(code, message):
    return bytes((code,)) + message.encode()


# ---- HELLO: version handshake --------------------------------------------------------------
# request:  MAGIC | min_version u8 | max_version u8
# response: MAGIC | version u8 | accepted u8 | max_dump_records u16 | firmware version (utf-8)
def parse_hello_request(payload):
    if len(payload) != len(MAGIC) + 2 or payload[:len(MAGIC)] != MAGIC:
        return None
    return payload[len(MAGIC)], payload[len(MAGIC) + 1]


def hello_response(version, accepted, firmware):
    return MAGIC + struct.pack("<BBH", version, 1 if accepted else 0, MAX_DUMP_RECORDS) + firmware.encode()


# ---- TIME: read (empty request) or set (host unix s) ---------------------------------------
# response: token_time_before u32 | was_set u8 | did_set u8 | correction_s i32 |
#           token_time_after u32 | boundary_seq u32
# boundary_seq is the token's next sequence number when the clock was read or set: records
# below it were stamped by the clock as it was before this request.
TIME_FORMAT = "<IBBiII"


def time_response(before, was_set, did_set, correction_s, after, boundary_seq):
    return struct.pack(TIME_FORMAT, before & 0xFFFFFFFF, 1 if was_set else 0, 1 if did_set else 0,
                       correction_s, after & 0xFFFFFFFF, boundary_seq & 0xFFFFFFFF)


# ---- DUMP: records from a sequence number ---------------------------------------------------
# request:  from_seq u32 | max_records u16
# response: oldest_seq u32 | next_seq u32 | acked_seq u32 (NO_SEQ: none) | runs u8 |
#           runs x (first_seq u32 | count u16 | count x 32-byte record)
# Records come in runs of consecutive sequence numbers: a record the token found corrupted on
# its flash is skipped, so a chunk may hold more than one run. An empty chunk (no runs) means
# nothing at or after from_seq.
def parse_dump_request(payload):
    if len(payload) != 6:
        return None
    return struct.unpack("<IH", payload)


# ---- ACK: the host stored everything up to and including upto_seq ---------------------------
# request: upto_seq u32; response: acked_seq u32 (NO_SEQ: none)
def seq_payload(seq):
    return struct.pack("<I", NO_SEQ if seq is None else seq)


# ---- KEYS (authenticated): own TEKs of the last N days --------------------------------------
# request: mac[32] | days u8
# response: count u8 | count x (rolling_start_interval u32 | tek[16]), oldest first
def keys_response(entries):
    parts = [bytes((len(entries),))]
    for start, tek in entries:
        parts.append(struct.pack("<I", start) + bytes(tek))
    return b"".join(parts)


# ---- EVENTS: the token's own event log ------------------------------------------------------
# request: from_seq u32 | max u8; response: JSON [[seq, time, code, detail], ...] oldest first
