# Messages of the sync protocol: command numbers and the byte layout of every request and
# response body (docs/sync-protocol.md is the specification; this module is its one
# implementation, shared by the token and tokentool).
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

NAMES = {
    HELLO: "HELLO", INFO: "INFO", TIME: "TIME", DUMP: "DUMP", ACK: "ACK",
    CHALLENGE: "CHALLENGE", KEYS: "KEYS", PROVISION: "PROVISION", WIPE: "WIPE", EVENTS: "EVENTS",
}

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
def hello_request(min_version, max_version):
    return MAGIC + bytes((min_version, max_version))


def parse_hello_request(payload):
    if len(payload) != len(MAGIC) + 2 or payload[:len(MAGIC)] != MAGIC:
        return None
    return payload[len(MAGIC)], payload[len(MAGIC) + 1]


def hello_response(version, accepted, firmware):
    return MAGIC + struct.pack("<BBH", version, 1 if accepted else 0, MAX_DUMP_RECORDS) + firmware.encode()


def parse_hello_response(payload):
    n = len(MAGIC)
    if len(payload) < n + 4 or payload[:n] != MAGIC:
        raise ValueError("not a sync protocol greeting")
    version, accepted, max_records = struct.unpack("<BBH", payload[n:n + 4])
    return version, bool(accepted), max_records, bytes(payload[n + 4:]).decode()


# ---- TIME: read (empty request) or set (host unix s) ---------------------------------------
# response: token_time_before u32 | was_set u8 | did_set u8 | correction_s i32 |
#           token_time_after u32 | boundary_seq u32
# boundary_seq is the token's next sequence number when the clock was read or set: records
# below it were stamped by the clock as it was before this request.
_TIME_FORMAT = "<IBBiII"


def time_response(before, was_set, did_set, correction_s, after, boundary_seq):
    return struct.pack(_TIME_FORMAT, before & 0xFFFFFFFF, 1 if was_set else 0, 1 if did_set else 0,
                       correction_s, after & 0xFFFFFFFF, boundary_seq & 0xFFFFFFFF)


def parse_time_response(payload):
    before, was_set, did_set, correction, after, boundary = struct.unpack(_TIME_FORMAT, payload)
    return {"token_time": before, "clock_was_set": bool(was_set), "did_set": bool(did_set),
            "correction_s": correction, "token_time_after": after, "boundary_seq": boundary}


# ---- DUMP: records from a sequence number ---------------------------------------------------
# request:  from_seq u32 | max_records u16
# response: oldest_seq u32 | next_seq u32 | acked_seq u32 (NO_SEQ: none) | runs u8 |
#           runs x (first_seq u32 | count u16 | count x 32-byte record)
# Records come in runs of consecutive sequence numbers: a record the token found corrupted on
# its flash is skipped, so a chunk may hold more than one run. An empty chunk (no runs) means
# nothing at or after from_seq.
def dump_request(from_seq, max_records):
    return struct.pack("<IH", from_seq, max_records)


def parse_dump_request(payload):
    if len(payload) != 6:
        return None
    return struct.unpack("<IH", payload)


def dump_header(oldest_seq, next_seq, acked_seq, runs):
    return struct.pack("<IIIB", oldest_seq, next_seq, NO_SEQ if acked_seq is None else acked_seq, runs)


def run_header(first_seq, count):
    return struct.pack("<IH", first_seq, count)


def parse_dump_response(payload):
    """(oldest_seq, next_seq, acked_seq or None, [(seq, record bytes), ...])."""
    if len(payload) < 13:
        raise ValueError("short DUMP response")
    oldest, next_seq, acked, runs = struct.unpack("<IIIB", payload[:13])
    pos = 13
    records = []
    for _ in range(runs):
        if len(payload) < pos + 6:
            raise ValueError("truncated DUMP run")
        first, count = struct.unpack("<IH", payload[pos:pos + 6])
        pos += 6
        end = pos + count * RECORD_SIZE
        if len(payload) < end:
            raise ValueError("truncated DUMP records")
        for i in range(count):
            records.append((first + i, bytes(payload[pos + i * RECORD_SIZE:pos + (i + 1) * RECORD_SIZE])))
        pos = end
    if pos != len(payload):
        raise ValueError("trailing bytes in DUMP response")
    return oldest, next_seq, None if acked == NO_SEQ else acked, records


# ---- ACK: the host stored everything up to and including upto_seq ---------------------------
# request: upto_seq u32; response: acked_seq u32 (NO_SEQ: none)
def ack_request(upto_seq):
    return struct.pack("<I", upto_seq)


def parse_seq(payload):
    value = struct.unpack("<I", payload)[0]
    return None if value == NO_SEQ else value


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


def parse_keys_response(payload):
    count = payload[0]
    if len(payload) != 1 + 20 * count:
        raise ValueError("malformed KEYS response")
    out = []
    for i in range(count):
        start = struct.unpack("<I", payload[1 + 20 * i:5 + 20 * i])[0]
        out.append((start, bytes(payload[5 + 20 * i:21 + 20 * i])))
    return out


# ---- EVENTS: the token's own event log ------------------------------------------------------
# request: from_seq u32 | max u8; response: JSON [[seq, time, code, detail], ...] oldest first
def events_request(from_seq, limit):
    return struct.pack("<IB", from_seq, limit)
