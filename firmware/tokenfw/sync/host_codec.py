# The host's half of the sync protocol messages: build requests, parse answers (layouts in
# messages.py and docs/sync-protocol.md). Pure functions over bytes; MicroPython-compatible so
# that firmware tests can play the host, but the token itself never imports it.
import struct

from tokenfw.sync.messages import (
    ACK, CHALLENGE, DUMP, EVENTS, HELLO, INFO, KEYS, MAGIC, NO_SEQ, PROVISION, RECORD_SIZE, TIME,
    TIME_FORMAT, WIPE,
)

NAMES = {
    HELLO: "HELLO", INFO: "INFO", TIME: "TIME", DUMP: "DUMP", ACK: "ACK",
    CHALLENGE: "CHALLENGE", KEYS: "KEYS", PROVISION: "PROVISION", WIPE: "WIPE", EVENTS: "EVENTS",
}


def hello_request(min_version, max_version):
    return MAGIC + bytes((min_version, max_version))


def parse_hello_response(payload):
    n = len(MAGIC)
    if len(payload) < n + 4 or payload[:n] != MAGIC:
        raise ValueError("not a sync protocol greeting")
    version, accepted, max_records = struct.unpack("<BBH", payload[n:n + 4])
    return version, bool(accepted), max_records, bytes(payload[n + 4:]).decode()


def parse_time_response(payload):
    before, was_set, did_set, correction, after, boundary = struct.unpack(TIME_FORMAT, payload)
    return {"token_time": before, "clock_was_set": bool(was_set), "did_set": bool(did_set),
            "correction_s": correction, "token_time_after": after, "boundary_seq": boundary}


def dump_request(from_seq, max_records):
    return struct.pack("<IH", from_seq, max_records)


def parse_dump_response(payload):
    """(oldest_seq, next_seq, acked_seq or None, [(seq, record bytes), ...])."""
    if len(payload) < 16 or (len(payload) - 16) % RECORD_SIZE:
        raise ValueError("DUMP answer of %d bytes" % len(payload))
    oldest, next_seq, acked, first = struct.unpack("<IIII", payload[:16])
    records = []
    for i in range((len(payload) - 16) // RECORD_SIZE):
        start = 16 + i * RECORD_SIZE
        records.append((first + i, bytes(payload[start:start + RECORD_SIZE])))
    return oldest, next_seq, None if acked == NO_SEQ else acked, records


def ack_request(upto_seq):
    return struct.pack("<I", upto_seq)


def parse_seq(payload):
    value = struct.unpack("<I", payload)[0]
    return None if value == NO_SEQ else value


def parse_keys_response(payload):
    count = payload[0]
    if len(payload) != 1 + 20 * count:
        raise ValueError("malformed KEYS response")
    out = []
    for i in range(count):
        start = struct.unpack("<I", payload[1 + 20 * i:5 + 20 * i])[0]
        out.append((start, bytes(payload[5 + 20 * i:21 + 20 * i])))
    return out


def events_request(from_seq, limit):
    return struct.pack("<IB", from_seq, limit)
