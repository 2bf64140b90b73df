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
from tokenfw.sync import messages as m
from tokenfw.sync.messages import Refused

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

# Error texts are terse: they cost RAM on the token; the host turns them into sentences.
# Plausible host clock: 2020-01-01 .. 2100-01-01. A host outside it has a broken clock; setting
# the token from it would corrupt every record's time.
_MIN_HOST_TIME = const(1577836800)
_MAX_HOST_TIME = const(4102444800)
_MAX_EVENTS = const(16)  # per EVENTS answer: 16 x ~70 bytes of JSON stays a small frame
_MAX_RUNS = const(8)  # runs of consecutive records per DUMP answer (corrupt records split runs)
_DUMP_RECORDS_AT = const(15)  # cmd u8, req u8, then the 13-byte DUMP header

# Requests whose effect must not repeat when the host retries after a lost answer.
_STATE_CHANGING = (m.TIME, m.ACK, m.PROVISION, m.WIPE, m.KEYS, m.CHALLENGE)


# cmd, req, DUMP header, run headers, records: the biggest answer. Allocated once, at import
# while the heap is young, and shared (a token has one server; tests that make many would
# otherwise fragment a 100 KB heap).
_DUMP_BUF = bytearray(_DUMP_RECORDS_AT + 6 * _MAX_RUNS + m.MAX_DUMP_RECORDS * m.RECORD_SIZE)


class SyncServer:
    def __init__(self, token):
        self.token = token
        self._reader = framing.FrameReader(m.MAX_REQUEST_WIRE)
        self._dump_buf = _DUMP_BUF
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
            if cmd == m.HELLO:
                answer = self._hello(body[2:])
            elif not self._greeted:
                raise Refused(m.E_HELLO_FIRST, "HELLO first")
            elif cmd == m.DUMP:
                self._dump(req, body[2:])  # streams its own answer
                return
            elif m.CHALLENGE <= cmd <= m.WIPE:
                answer = self._privileged(cmd, body[2:])
            else:
                handler = self._HANDLERS.get(cmd)
                if handler is None:
                    raise Refused(m.E_UNKNOWN_COMMAND, "cmd %d" % cmd)
                answer = handler(self, body[2:])
            frame = framing.encode(m.body(cmd | m.RESPONSE, req, answer), False)
        except Refused as refusal:
            self.errors += 1
            frame = framing.encode(m.body(m.ERROR, req, m.error_payload(refusal.args[0], refusal.args[1])), False)
        except Exception as error:  # a bug or a flash error must not stop the app
            self.errors += 1
            self.log("sync_error", "%s %s" % (type(error).__name__, error))
            frame = framing.encode(m.body(m.ERROR, req, m.error_payload(m.E_INTERNAL, "%s %s" % (type(error).__name__, error))), False)
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
        versions = m.parse_hello_request(payload)
        if versions is None:
            raise Refused(m.E_BAD_REQUEST, "HELLO")
        low, high = versions
        accepted = low <= m.PROTOCOL_VERSION <= high
        self._greeted = accepted
        self.nonce = None
        self._last_request = None
        self._last_answer = None
        return m.hello_response(m.PROTOCOL_VERSION, accepted, self.token.version)

    def _info(self, payload):
        token = self.token
        config = self.config()
        store = token.store
        clock = token.clock
        info = {
            "serial": config.get("serial"),
            "provisioned": self._provisioned(),
            "firmware": token.version,
            "protocol": m.PROTOCOL_VERSION,
            "board": getattr(token.board, "name", None),
            "role": config.get("role"),
            "identity": config.get("identity"),
            "tx_power_dbm": config.get("tx_power_dbm"),
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
            return m.time_response(before, was_set, False, 0, before, boundary)
        if len(payload) != 4:
            raise Refused(m.E_BAD_REQUEST, "TIME")
        host_time = struct.unpack("<I", payload)[0]
        if not _MIN_HOST_TIME <= host_time < _MAX_HOST_TIME:
            raise Refused(m.E_BAD_REQUEST, "host time %d" % host_time)
        try:
            correction = clock.set(host_time)
        except ValueError as error:
            raise Refused(m.E_BAD_REQUEST, str(error))
        self.log("clock_set", "correction %d s" % correction)
        return m.time_response(before, was_set, True, correction, clock.now(), boundary)

    def _dump(self, req, payload):
        """Answer a DUMP straight from a preallocated buffer, streamed out in small pieces:
        no per-request allocation grows with the chunk size."""
        request = m.parse_dump_request(payload)
        if request is None:
            raise Refused(m.E_BAD_REQUEST, "DUMP")
        from_seq, limit = request
        if limit > m.MAX_DUMP_RECORDS:
            limit = m.MAX_DUMP_RECORDS
        store = self.token.store
        buf = self._dump_buf
        buf[0] = m.DUMP | m.RESPONSE
        buf[1] = req
        pos = _DUMP_RECORDS_AT
        runs = 0
        run_at = 0
        run_first = 0
        run_count = 0
        if limit:
            for seq, record in store.read(from_seq, limit):
                if not (run_count and seq == run_first + run_count):
                    if runs == _MAX_RUNS:
                        break  # a very holey chunk ends early; the host asks again from here
                    if run_count:
                        struct.pack_into("<IH", buf, run_at, run_first, run_count)
                    run_at = pos
                    pos += 6
                    runs += 1
                    run_first = seq
                    run_count = 0
                buf[pos:pos + m.RECORD_SIZE] = record
                pos += m.RECORD_SIZE
                run_count += 1
            if run_count:
                struct.pack_into("<IH", buf, run_at, run_first, run_count)
        acked = store.acked_seq
        struct.pack_into("<IIIB", buf, 2, store.oldest_seq, store.next_seq,
                         m.NO_SEQ if acked is None else acked, runs)
        framing.write_frame(self._write, memoryview(buf)[:pos], 256, False)

    def _ack(self, payload):
        if len(payload) != 4:
            raise Refused(m.E_BAD_REQUEST, "ACK")
        upto = struct.unpack("<I", payload)[0]
        store = self.token.store
        if upto >= store.next_seq:
            raise Refused(m.E_REFUSED, "ack %d > %d" % (upto, store.next_seq - 1))
        acked = store.acked_seq
        if acked is None or acked < upto:
            store.ack(upto)
        note = getattr(self.token, "note_synced", None)
        if note is not None:
            note(self.token.clock.now())  # the wearer's "sync overdue" light goes out
        return m.seq_payload(store.acked_seq)

    def _events(self, payload):
        if len(payload) != 5:
            raise Refused(m.E_BAD_REQUEST, "EVENTS")
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

    _HANDLERS = {
        m.INFO: _info, m.TIME: _time, m.ACK: _ack, m.EVENTS: _events,
    }


