# The token's side of the sync protocol: turns request frames from the console into answers.
#
# The app calls feed(data, write) whenever console bytes arrive; every call is short (DUMP
# answers one chunk per request, the host pulls the next), so logging never stalls behind a
# sync. RAM is bounded: requests are limited to MAX_REQUEST_WIRE bytes on the wire, a DUMP
# chunk to MAX_DUMP_RECORDS records, and nothing grows with the size of the log.
#
# Edge cases it survives: garbage and REPL text between frames (skipped), corrupted or
# truncated frames (dropped: the host retries), repeated requests after a lost answer (the
# answer to the last state-changing request is kept and sent again, so a retried TIME set or
# ACK never applies twice), requests before HELLO, an incompatible host, bad arguments, a
# wrong or replayed MAC. Every failure answers an ERROR frame; none raises into the app.
import gc
import json
import struct

from tokenfw.sync import framing

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

# The protocol's numbers, as private consts: compiled into the bytecode, so the token never
# loads messages.py (the specification module the host uses). tests/firmware/mp/
# test_sync_numbers.py checks that both agree.
_VERSION = const(1)
_HELLO = const(0x01)
_INFO = const(0x02)
_TIME = const(0x03)
_DUMP = const(0x04)
_ACK = const(0x05)
_CHALLENGE = const(0x06)
_KEYS = const(0x07)
_PROVISION = const(0x08)
_WIPE = const(0x09)
_EVENTS = const(0x0A)
_RESPONSE = const(0x80)
_ERROR = const(0xFF)
E_BAD_REQUEST = const(1)
E_UNKNOWN_COMMAND = const(2)
E_HELLO_FIRST = const(3)
E_AUTH = const(5)
E_NOT_PROVISIONED = const(6)
E_REFUSED = const(7)
E_INTERNAL = const(8)
MAX_DUMP_RECORDS = const(128)
_RECORD = const(32)
_NO_SEQ = const(0xFFFFFFFF)
_MAX_REQUEST_WIRE = const(640)  # the largest request (PROVISION) is ~400 wire bytes
_MAGIC = b"TTSYNC"


class Refused(Exception):
    """Raised by command handlers as Refused(code, detail): answered as ERROR."""


# Error texts are terse: they cost RAM on the token; the host turns them into sentences.
# Plausible host clock: 2020-01-01 .. 2100-01-01. A host outside it has a broken clock; setting
# the token from it would corrupt every record's time.
_MIN_HOST_TIME = const(1577836800)
_MAX_HOST_TIME = const(4102444800)
_MAX_EVENTS = const(16)  # per EVENTS answer: 16 x ~70 bytes of JSON stays a small frame

# Requests whose effect must not repeat when the host retries after a lost answer.
_STATE_CHANGING = (_TIME, _ACK, _PROVISION, _WIPE, _KEYS, _CHALLENGE)


def answer_frame(kind, req, payload):
    return framing.encode(bytes((kind, req)) + payload, False)


class SyncServer:
    def __init__(self, token):
        self.token = token
        self._reader = framing.FrameReader(_MAX_REQUEST_WIRE)
        self._greeted = False
        self.nonce = None
        self._last_request = None   # body of the last state-changing request
        self._last_answer = None    # the wire bytes we answered it with
        self.requests = 0
        self.errors = 0
        self.auth_failures = 0

    # ---- entry point ---------------------------------------------------------------------
    def feed(self, data, write):
        """Consume console bytes; call write(frame) for each answer."""
        self._write = write
        try:
            self._reader.feed(data, self._on_body)
        finally:
            self._write = None

    @property
    def bad_frames(self):
        return self._reader.bad + self._reader.overflows

    def _on_body(self, body):
        if len(body) < 2:
            return
        cmd = body[0]
        req = body[1]
        if cmd in _STATE_CHANGING and body == self._last_request:
            self._write(self._last_answer)  # a retry: same answer, no second effect
            return
        self.requests += 1
        try:
            if cmd == _HELLO:
                answer = self._hello(body[2:])
            elif not self._greeted:
                raise Refused(E_HELLO_FIRST, "HELLO first")
            elif cmd == _DUMP:
                self._dump(req, body[2:])  # streams its own answer
                return
            elif _CHALLENGE <= cmd <= _WIPE:
                answer = self._privileged(cmd, body[2:])
            elif cmd == _INFO:
                answer = self._info()
            elif cmd == _TIME:
                answer = self._time(body[2:])
            elif cmd == _ACK:
                answer = self._ack(body[2:])
            elif cmd == _EVENTS:
                answer = self._events(body[2:])
            else:
                raise Refused(E_UNKNOWN_COMMAND, "cmd %d" % cmd)
            frame = answer_frame(cmd | _RESPONSE, req, answer)
        except Refused as refusal:
            self.errors += 1
            frame = answer_frame(_ERROR, req, bytes((refusal.args[0],)) + refusal.args[1].encode())
        except Exception as error:  # a bug or a flash error must not stop the app
            self.errors += 1
            detail = "%s %s" % (type(error).__name__, error)
            self.log("sync_error", detail)
            frame = answer_frame(_ERROR, req, bytes((E_INTERNAL,)) + detail.encode())
        if cmd in _STATE_CHANGING:
            self._last_request = bytes(body)
            self._last_answer = frame
        self._write(frame)

    # ---- helpers ---------------------------------------------------------------------------
    def log(self, kind, detail):
        events = getattr(self.token, "events", None)
        if events is None:
            return
        try:
            events.log(kind, detail, now=self.token.clock.now())
        except Exception:
            pass

    def config(self):
        return self.token.config or {}

    def _provisioned(self):
        config = self.config()
        return bool(config.get("serial")) and bool(config.get("auth_key"))

    def _privileged(self, cmd, payload):
        # Loaded on the first privileged request only: most syncs never need it, and RAM is
        # scarce while the sync stack is loaded next to the app. Collect first: loading needs
        # a few contiguous blocks, and the heap is full of the last answers' garbage.
        gc.collect()
        try:
            from tokenfw.sync import privileged
        except MemoryError:
            import sys
            sys.modules.pop("tokenfw.sync.privileged", None)
            gc.collect()
            from tokenfw.sync import privileged

        return privileged.HANDLERS[cmd](self, payload)

    # ---- commands --------------------------------------------------------------------------
    def _hello(self, payload):
        if len(payload) != 8 or payload[:6] != _MAGIC:
            raise Refused(E_BAD_REQUEST, "HELLO")
        accepted = payload[6] <= _VERSION <= payload[7]
        self._greeted = accepted
        self.nonce = None
        self._last_request = None
        self._last_answer = None
        return _MAGIC + struct.pack("<BBH", _VERSION, 1 if accepted else 0, MAX_DUMP_RECORDS) + self.token.version.encode()

    def _info(self):
        token = self.token
        config = self.config()
        store = token.store
        clock = token.clock
        info = {
            "serial": config.get("serial"),
            "provisioned": self._provisioned(),
            "firmware": token.version,
            "protocol": _VERSION,
            "board": getattr(token.board, "name", None),
            "role": config.get("role"),
            "identity": config.get("identity"),
            "tx_power_dbm": config.get("tx_power_dbm"),
            "profile": config.get("profile"),
            "clock": clock.now(),
            "clock_set": bool(clock.is_set()),
            "clock_last_set_at": clock.last_set_at,
            "clock_last_correction_s": clock.last_correction_s,
            "oldest_seq": store.oldest_seq,
            "next_seq": store.next_seq,
            "acked_seq": store.acked_seq,
            "pending": store.pending(),
            "last_sync_at": getattr(token, "last_sync_at", None),
        }
        battery = getattr(token.board, "battery", None)
        if battery is not None:
            try:
                info["battery_mv"] = battery.millivolts()
                info["battery_percent"] = battery.percent()
            except Exception:
                info["battery_mv"] = None
        try:
            stats = store.stats()
            info["storage"] = {"bytes_used": stats.get("bytes_used"), "bytes_total": stats.get("bytes_total"),
                               "corrupt_skipped": stats.get("corrupt_skipped"),
                               "dropped_unacked": stats.get("dropped_unacked")}
            stats = None
        except Exception:
            info["storage"] = None
        info["oldest_time"] = self._first_seen(store.oldest_seq, store.next_seq)
        info["newest_time"] = self._first_seen(store.next_seq - 1, store.next_seq)
        return json.dumps(info).encode()

    def _first_seen(self, seq, next_seq):
        if seq is None or seq < 0 or seq >= next_seq:
            return None
        for _, record in self.token.store.read(seq, 1):
            return struct.unpack("<I", bytes(record[20:24]))[0]
        return None

    def _time(self, payload):
        clock = self.token.clock
        store = self.token.store
        store.commit()  # what was logged so far is part of this sync's dump
        before = clock.now()
        was_set = bool(clock.is_set())
        boundary = store.next_seq
        if not payload:
            return _time_answer(before, was_set, False, 0, before, boundary)
        if len(payload) != 4:
            raise Refused(E_BAD_REQUEST, "TIME")
        host_time = struct.unpack("<I", payload)[0]
        if not _MIN_HOST_TIME <= host_time < _MAX_HOST_TIME:
            raise Refused(E_BAD_REQUEST, "host time %d" % host_time)
        close = getattr(self.token, "close_encounters", None)
        if close is not None:
            # Encounters still open were stamped by the old clock: log them before it changes,
            # so each record's correction is the one of the clock that stamped it.
            close()
            boundary = store.next_seq
        try:
            correction = clock.set(host_time)
        except ValueError as error:
            raise Refused(E_BAD_REQUEST, str(error))
        self.log("clock_set", "correction %d s" % correction)
        return _time_answer(before, was_set, True, correction, clock.now(), boundary)

    def _dump(self, req, payload):
        """Stream a DUMP answer record by record, straight from the store: no buffer, and no
        allocation that grows with the chunk. The answer holds one run of consecutive records;
        at a gap (a record corrupt on flash, skipped by the store) it ends, and the host asks
        again from the next sequence number."""
        if len(payload) != 6:
            raise Refused(E_BAD_REQUEST, "DUMP")
        from_seq, limit = struct.unpack("<IH", payload)
        if limit > MAX_DUMP_RECORDS:
            limit = MAX_DUMP_RECORDS
        store = self.token.store
        acked = store.acked_seq
        head = struct.pack("<BBIII", _DUMP | _RESPONSE, req, store.oldest_seq, store.next_seq,
                           _NO_SEQ if acked is None else acked)
        write = self._write
        crc = 0
        expected = -1
        records = store.read(from_seq, limit if limit else 1)
        for seq, record in records:
            if not limit:
                break
            if expected < 0:
                head += struct.pack("<I", seq)
                write(b"\xc0" + framing.stuff(head, False))
                crc = framing.crc(head)
            elif seq != expected:
                break  # a gap: the run ends here
            write(framing.stuff(record, False))
            crc = framing.crc(record, crc)
            expected = seq + 1
        if hasattr(records, "close"):
            records.close()  # a run cut at a gap: let the store close its segment file now
        if expected < 0:  # nothing at or after from_seq
            head += struct.pack("<I", from_seq)
            write(b"\xc0" + framing.stuff(head, False))
            crc = framing.crc(head)
        write(framing.stuff(struct.pack("<I", crc), False) + b"\xc0")

    def _ack(self, payload):
        if len(payload) != 4:
            raise Refused(E_BAD_REQUEST, "ACK")
        upto = struct.unpack("<I", payload)[0]
        store = self.token.store
        if upto >= store.next_seq:
            raise Refused(E_REFUSED, "ack %d > %d" % (upto, store.next_seq - 1))
        acked = store.acked_seq
        if acked is None or acked < upto:
            store.ack(upto)
        note = getattr(self.token, "note_synced", None)
        if note is not None:
            note(self.token.clock.now())  # the wearer's "sync overdue" light goes out
        acked = store.acked_seq
        return struct.pack("<I", _NO_SEQ if acked is None else acked)

    def _events(self, payload):
        if len(payload) != 5:
            raise Refused(E_BAD_REQUEST, "EVENTS")
        from_seq, limit = struct.unpack("<IB", payload)
        if limit > _MAX_EVENTS:
            limit = _MAX_EVENTS
        out = []
        if limit:
            for seq, when, code, detail in self.token.events.records(from_seq):
                out.append([seq, when, code, detail])
                if len(out) >= limit:
                    break
        return json.dumps(out).encode()


def _time_answer(before, was_set, did_set, correction_s, after, boundary_seq):
    return struct.pack("<IBBiII", before & 0xFFFFFFFF, 1 if was_set else 0, 1 if did_set else 0,
                       correction_s, after & 0xFFFFFFFF, boundary_seq & 0xFFFFFFFF)
