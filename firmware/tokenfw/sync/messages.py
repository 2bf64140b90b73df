# Messages of the sync protocol: command numbers, error codes and the byte layout of every
# request and answer body (docs/sync-protocol.md is the specification). host_codec.py builds
# requests and parses answers with these; the token's server.py compiles the same numbers in as
# private consts so that it never loads this module into its RAM
# (tests/firmware/mp/test_sync_numbers.py checks that they agree).
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
MAX_DUMP_RECORDS = const(128)
RECORD_SIZE = const(32)
MAC_SIZE = const(32)
NONCE_SIZE = const(16)
NO_SEQ = const(0xFFFFFFFF)  # "none" in u32 sequence fields (nothing acknowledged yet)

# Bounds on frame bodies: what a token accepts (small requests) and what a host accepts.
MAX_REQUEST_WIRE = const(640)
MAX_RESPONSE_WIRE = const(12000)


def body(cmd, req, payload=b""):
    return bytes((cmd, req & 0xFF)) + payload


def error_payload(code, message):
    return bytes((code,)) + message.encode()


# ---- HELLO: version handshake --------------------------------------------------------------
# request:  MAGIC | min_version u8 | max_version u8
# response: MAGIC | version u8 | accepted u8 | max_dump_records u16 | firmware version (utf-8)


# ---- TIME: read (empty request) or set (host unix s) ---------------------------------------
# response: token_time_before u32 | was_set u8 | did_set u8 | correction_s i32 |
#           token_time_after u32 | boundary_seq u32
# boundary_seq is the token's next sequence number when the clock was read or set: records
# below it were stamped by the clock as it was before this request.
TIME_FORMAT = "<IBBiII"


# ---- DUMP: records from a sequence number ---------------------------------------------------
# request:  from_seq u32 | max_records u16
# response: oldest_seq u32 | next_seq u32 | acked_seq u32 (NO_SEQ: none) | first_seq u32 |
#           n x 32-byte record, seqs first_seq .. first_seq + n - 1 (n from the length)
# One run of consecutive records per answer: a record the token found corrupted on its flash is
# skipped by its store, and the answer ends before the gap; the host asks again after it. No
# records means nothing at or after from_seq.


# ---- ACK: the host stored everything up to and including upto_seq ---------------------------
# request: upto_seq u32; response: acked_seq u32 (NO_SEQ: none)


# ---- KEYS (authenticated): own TEKs of the last N days --------------------------------------
# request: mac[32] | days u8
# response: count u8 | count x (rolling_start_interval u32 | tek[16]), oldest first


# ---- EVENTS: the token's own event log ------------------------------------------------------
# request: from_seq u32 | max u8; response: JSON [[seq, time, code, detail], ...] oldest first
