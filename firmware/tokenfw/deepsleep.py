# What a deep-sleeping token keeps in RTC memory, the only RAM that survives the sleep, and how
# the app packs it before the sleep and picks it up after the wake. Loaded only by tokens that
# deep-sleep (the `burst` profile): the others never pay its RAM.
#
# Layout (little-endian), then the open encounters (tokenfw.encounters snapshot) and a CRC-32
# of everything before it:
#   "TS" version:u8 scan_id:u16 last_commit:u32 last_status:u32 last_retention:u32
#   scan_ms:u32 adv_ms:u32 awake_ms:u32 asleep_ms:u32 wakes:u32
# Times are token-clock unix seconds; the counters are radio and sleep time not yet written to
# the event log (the hourly "radio" line). RTC memory holds garbage after a power-on and a
# previous firmware's layout after an update: unpack() refuses anything that does not check.
import struct

from tokenfw import records
from tokenfw.app import COUNTERS  # the app's counters, in the order they are packed

_MAGIC = b"TS"
_VERSION = 1
_HEADER = "<2sBHIIIIIIII"
HEADER_BYTES = struct.calcsize(_HEADER)
RTC_MEMORY_BYTES = 2048  # ESP32 port: machine.RTC().memory() holds at most this


def _check(data):
    return records._crc32(data) & 0xFFFFFFFF


def pack(scan_id, last_commit, last_status, last_retention, counters, encounters):
    """Bytes for RTC memory; `counters` maps COUNTERS names to ints, `encounters` is
    Aggregator.snapshot()."""
    body = struct.pack(_HEADER, _MAGIC, _VERSION, scan_id & 0xFFFF, last_commit, last_status, last_retention,
                       *[counters[name] & 0xFFFFFFFF for name in COUNTERS]) + encounters
    return body + struct.pack("<I", _check(body))


def unpack(data):
    """(scan_id, last_commit, last_status, last_retention, counters, encounters), or None when
    `data` is not a state this firmware packed."""
    if data is None or len(data) < HEADER_BYTES + 4:
        return None
    body = data[:-4]
    if struct.unpack("<I", data[-4:])[0] != _check(body):
        return None
    fields = struct.unpack_from(_HEADER, body)
    if fields[0] != _MAGIC or fields[1] != _VERSION:
        return None
    return fields[2], fields[3], fields[4], fields[5], dict(zip(COUNTERS, fields[6:])), body[HEADER_BYTES:]


def prepare(token, now, sleep_ms):
    """Commit the token's log and pack what must outlive the sleep into RTC memory (the
    board's deep_sleep turns the radio off)."""
    token.aggregator.tick(now)
    encounters = token.aggregator.snapshot()
    if HEADER_BYTES + len(encounters) + 4 > RTC_MEMORY_BYTES:
        token.aggregator.close_all(now)  # more than RTC memory holds: log them now
        encounters = b""
    token.commit(now)
    counters = token.counters()
    counters["asleep_ms"] += sleep_ms
    counters["wakes"] += 1
    token.board.rtc_memory(pack(token.scan_id, token.last_commit, token.last_status, token.last_retention,
                                counters, encounters))


def resume(token, memory):
    """Reopen the open encounters and counters packed before the sleep: (last_commit,
    last_status, last_retention, counters), or None when `memory` is damaged (nothing changed)."""
    state = unpack(memory)
    if state is None:
        return None
    try:
        token.aggregator.restore(state[5])
    except ValueError:
        return None
    token.scan_id = state[0]
    return state[1:5]
