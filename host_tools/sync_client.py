"""The host side of the sync protocol, written once over `Transport` (docs/sync-protocol.md).

`SyncClient(transport).connect()` performs the version handshake (and tells a plain
MicroPython REPL or a silent port apart from a token), then offers one method per command.
Every request is retried when its answer is lost or corrupted; DUMP keeps several requests in
flight so that the line never idles between chunks.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tokenfw.sync import auth, framing
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m

from host_tools.errors import TokenToolError, TransportError
from host_tools.transport.base import Transport

SUPPORTED_VERSIONS = (1, 1)
# How a MicroPython REPL shows itself at the end of what a port sent: the friendly prompt or
# the raw REPL's. (A banner or a traceback alone is not enough: a token prints its banner while
# it boots into the app.)
_REPL_PROMPTS = (b">>> ", b"raw REPL; CTRL-B to exit\r\n>")


class SyncError(TokenToolError):
    """A sync protocol failure; `port` names the token's port."""

    def __init__(self, message: str, port: str | None = None) -> None:
        super().__init__(message)
        self.port = port


class NoAnswer(SyncError, TransportError):
    exit_code = 3


class WrongDevice(SyncError):
    exit_code = 4


class VersionMismatch(SyncError):
    exit_code = 4


class TokenRefused(SyncError):
    """The token answered with an ERROR frame."""

    def __init__(self, message: str, port: str | None = None, code: int = 0) -> None:
        super().__init__(message, port)
        self.code = code


class AuthFailed(TokenRefused):
    exit_code = 5


class _GreetingLost(Exception):
    """The token answered "HELLO first" mid-session: its app restarted (a reset, or line noise
    that became a Ctrl-C / Ctrl-D). The client greets it again and re-sends what was in flight."""


@dataclass
class Hello:
    version: int
    firmware: str
    max_dump_records: int


@dataclass
class _Pending:
    req: int
    cmd: int
    frame: bytes
    sent_at: float
    tries: int = 1
    overtaken: bool = False  # already re-sent because a later request was answered first


# How many answer timeouts a first HELLO may go unanswered (12 s at the default 1.5 s): opening
# the port resets an ESP32 DevKit (DTR/RTS), and a token that was just plugged in or reset
# needs seconds to boot and start the app.
HELLO_PATIENCE_TIMEOUTS = 8


class SyncClient:
    def __init__(self, transport: Transport, *, timeout_s: float = 1.5, retries: int = 6,
                 versions: tuple[int, int] = SUPPORTED_VERSIONS) -> None:
        self.transport = transport
        self.port = transport.name
        self.timeout_s = timeout_s
        self.retries = retries
        self.versions = versions
        self.hello: Hello | None = None
        self._reader = framing.FrameReader(m.MAX_RESPONSE_WIRE)
        self._next_req = 0
        self._answers: dict[int, tuple[int, bytes]] = {}
        self._raw_tail = bytearray()  # recent raw bytes, to recognise a REPL
        self.retransmissions = 0
        self.greetings_lost = 0
        self.wire_bytes_in = 0
        self.wire_bytes_out = 0

    # ---- plumbing -------------------------------------------------------------------------
    @property
    def bad_frames(self) -> int:
        return self._reader.bad + self._reader.overflows

    def _new_request(self, cmd: int, payload: bytes) -> _Pending:
        req = self._next_req
        self._next_req = (self._next_req + 1) & 0xFF
        frame = framing.encode(m.body(cmd, req, payload))
        self._write(frame)
        return _Pending(req, cmd, frame, time.monotonic())

    def _write(self, frame: bytes) -> None:
        self.wire_bytes_out += len(frame)
        self.transport.write(frame)

    def _on_body(self, body: bytes) -> None:
        if len(body) >= 2:
            self._answers[body[1]] = (body[0], bytes(body[2:]))

    def _receive(self, timeout_s: float) -> bool:
        data = self.transport.read(timeout_s)
        if not data:
            return False
        self.wire_bytes_in += len(data)
        self._raw_tail += data
        del self._raw_tail[:-4096]
        self._reader.feed(data, self._on_body)
        return True

    def _take(self, pending: _Pending) -> bytes | None:
        answer = self._answers.pop(pending.req, None)
        if answer is None:
            return None
        kind, payload = answer
        if kind == m.ERROR:
            self._raise_error(pending.cmd, payload)
        if kind != pending.cmd | m.RESPONSE:
            return None  # an old answer with a recycled request number: keep waiting
        return payload

    def _raise_error(self, cmd: int, payload: bytes) -> None:
        code = payload[0] if payload else 0
        if code == m.E_HELLO_FIRST and cmd != m.HELLO and self.hello is not None:
            raise _GreetingLost()
        detail = payload[1:].decode("utf-8", "replace")
        name = hc.NAMES.get(cmd, str(cmd))
        text = explain_refusal(cmd, code, detail)
        if code == m.E_AUTH:
            raise AuthFailed(f"token on {self.port} refused {name}: {text}", self.port, code)
        if code == m.E_VERSION:
            raise VersionMismatch(f"token on {self.port}: {text}", self.port)
        raise TokenRefused(f"token on {self.port} refused {name}: {text}", self.port, code)

    def _resend(self, pending: _Pending) -> None:
        if pending.tries > self.retries:
            self._no_answer(pending)
        pending.tries += 1
        pending.sent_at = time.monotonic()
        self.retransmissions += 1
        self._write(pending.frame)

    def _no_answer(self, pending: _Pending) -> None:
        name = hc.NAMES.get(pending.cmd, str(pending.cmd))
        if self._looks_like_repl():
            raise self._wrong_device()
        raise NoAnswer(
            f"the token on {self.port} stopped answering ({name} unanswered after {pending.tries} tries); "
            "check the cable and run the command again", self.port)

    def _looks_like_repl(self) -> bool:
        tail = bytes(self._raw_tail).rstrip(b"\r\n")
        return any(tail.endswith(prompt.rstrip(b"\r\n")) for prompt in _REPL_PROMPTS)

    def _wrong_device(self) -> WrongDevice:
        """The error for "a REPL answered": read what follows for a moment (the end of a
        traceback, the prompt) so the message can say why the app is not running."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if not self._receive(0.1) and b">>> " in self._raw_tail:
                break
        text = bytes(self._raw_tail).decode("utf-8", "replace")
        if "Traceback (most recent call last)" in text:
            lines = [line.strip() for line in text.split("Traceback (most recent call last)")[-1].splitlines()]
            lines = [line for line in lines if line and not line.startswith((">>>", "File ", "MicroPython", "Type "))]
            reason = lines[-1] if lines else "an error"
            return WrongDevice(
                f"the token app on {self.port} stopped with {reason[:120]} and the board is at the MicroPython "
                f"REPL; reset the token (mpremote connect {self.port} soft-reset) and run the command again", self.port)
        return WrongDevice(_repl_message(self.port), self.port)

    def call(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one request and return its answer's payload (retrying lost frames)."""
        queue = [(cmd, payload)]
        return next(self.pipeline(lambda: queue.pop() if queue else None, window=1))[1]

    def pipeline(self, next_request: Callable[[], tuple | None], window: int) -> Iterator[tuple[tuple, bytes]]:
        """Send the requests `next_request()` hands out ((cmd, payload, ...) tuples, None when
        it has none now), keeping up to `window` unanswered; yield (request, answer) in order.
        It is asked again after every answer, so it may add requests that depend on answers.

        The token answers in order, so an answer to a later request proves an earlier one was
        lost: it is re-sent at once instead of after a time-out.
        """
        inflight: list[tuple[tuple, _Pending]] = []
        while True:
            while len(inflight) < window:
                request = next_request()
                if request is None:
                    break
                inflight.append((request, self._new_request(request[0], request[1])))
            if not inflight:
                return
            request, oldest = inflight[0]
            try:
                answer = self._take(oldest)
            except _GreetingLost:
                self._greet_again()
                for _, pending in inflight:
                    self._answers.pop(pending.req, None)
                    self._resend(pending)
                continue
            if answer is not None:
                inflight.pop(0)
                yield request, answer
                continue
            if not oldest.overtaken and any(p.req in self._answers for _, p in inflight[1:]):
                oldest.overtaken = True
                self._resend(oldest)
                continue
            now = time.monotonic()
            if now - oldest.sent_at > self.timeout_s * (1 + len(inflight)):
                self._resend(oldest)
                for _, later in inflight[1:]:  # the later ones were probably dropped too
                    later.sent_at = time.monotonic()
                continue
            if self._receive(0.05):
                # bytes are arriving: a long answer is on its way, do not time out under it
                oldest.sent_at = max(oldest.sent_at, time.monotonic() - self.timeout_s / 2)

    def _greet_again(self) -> None:
        self.greetings_lost += 1
        if self.greetings_lost > 3:
            raise NoAnswer(f"the token on {self.port} keeps restarting during the sync; check the cable "
                           "(line noise) and the battery, then run the command again", self.port)
        hello, self.hello = self.hello, None
        try:
            self.connect()
        finally:
            self.hello = self.hello or hello

    # ---- handshake --------------------------------------------------------------------------
    def connect(self) -> Hello:
        """Version handshake. Raises WrongDevice for a plain REPL, VersionMismatch, NoAnswer."""
        self.transport.discard_input()
        self._raw_tail.clear()
        pending = self._new_request(m.HELLO, hc.hello_request(*self.versions))
        probed = False
        started = time.monotonic()
        while True:
            answer = self._take(pending)
            if answer is not None:
                break
            if time.monotonic() - pending.sent_at > self.timeout_s:
                if not probed or self._looks_like_repl():
                    # No answer: a REPL waits for Enter before it shows its prompt, the app
                    # ignores it. A prompt now means a REPL is on this port, not the app.
                    probed = True
                    self.transport.write(b"\r\n")
                    self._receive(0.3)
                    if self._looks_like_repl():
                        raise self._wrong_device()
                if time.monotonic() - started > HELLO_PATIENCE_TIMEOUTS * self.timeout_s:
                    raise NoAnswer(
                        f"no token answered on {self.port}; check the cable, press the token's button "
                        "or reset it, and run the command again", self.port)
                self._resend(pending)
            self._receive(0.05)
        try:
            version, accepted, max_records, firmware = hc.parse_hello_response(answer)
        except ValueError:
            raise WrongDevice(f"the device on {self.port} does not speak the token sync protocol", self.port) from None
        low, high = self.versions
        if not accepted or not low <= version <= high:
            raise VersionMismatch(
                f"the token on {self.port} speaks sync protocol v{version} (firmware {firmware}) "
                f"but this tokentool speaks v{low}" + ("" if low == high else f"-v{high}")
                + ("; update tokentool" if version > high else "; deploy newer firmware to the token"),
                self.port)
        self.hello = Hello(version, firmware, max_records)
        return self.hello

    # ---- commands ------------------------------------------------------------------------------
    def info(self) -> dict:
        return json.loads(self.call(m.INFO))

    def read_time(self) -> dict:
        return hc.parse_time_response(self.call(m.TIME))

    def set_time(self, unix_s: int) -> dict:
        return hc.parse_time_response(self.call(m.TIME, int(unix_s).to_bytes(4, "little")))

    def dump(self, from_seq: int, until_seq: int, *, chunk: int = 128, window: int = 3
             ) -> Iterator[list[tuple[int, bytes]]]:
        """Chunks of (seq, record) for from_seq <= seq < until_seq, each record once.

        Chunks arrive roughly in order. An answer ends early at a record the token found
        corrupt on its flash; the rest of that range is asked for again (the token skips the
        bad record). Records the token already dropped (retention) are simply not there.
        """
        chunk = max(1, min(chunk, self.hello.max_dump_records if self.hello else 128))
        planned = [from_seq]
        refills: list[tuple[int, int]] = []

        def next_request() -> tuple | None:
            if refills:
                start, end = refills.pop(0)
            elif planned[0] < until_seq:
                start = planned[0]
                end = min(until_seq, start + chunk)
                planned[0] = end
            else:
                return None
            return m.DUMP, hc.dump_request(start, end - start), start, end

        seen: set[int] = set()
        for request, answer in self.pipeline(next_request, window):
            _, _, start, end = request
            try:
                _, _, _, records = hc.parse_dump_response(answer)
            except (ValueError, IndexError) as error:
                raise SyncError(f"the token on {self.port} sent a malformed DUMP answer ({error})", self.port) from None
            if records and records[-1][0] + 1 < end:
                refills.append((records[-1][0] + 1, end))  # cut short at a gap: ask for the rest
            fresh = [(seq, rec) for seq, rec in records if start <= seq < until_seq and seq not in seen]
            if fresh:
                seen.update(seq for seq, _ in fresh)
                yield fresh

    def ack(self, upto_seq: int) -> int | None:
        return hc.parse_seq(self.call(m.ACK, hc.ack_request(upto_seq)))

    def _privileged(self, cmd: int, rest: bytes, auth_key: bytes) -> bytes:
        nonce = self.call(m.CHALLENGE)
        mac = auth.mac(auth_key, nonce, cmd, rest)
        return self.call(cmd, mac + rest)

    def keys(self, days: int, auth_key: bytes) -> list[tuple[int, bytes]]:
        return hc.parse_keys_response(self._privileged(m.KEYS, bytes((days,)), auth_key))

    def provision(self, identity: dict, auth_key: bytes | None = None) -> dict:
        rest = json.dumps(identity, sort_keys=True).encode()
        if auth_key is None:
            answer = self.call(m.PROVISION, bytes(m.MAC_SIZE) + rest)
        else:
            answer = self._privileged(m.PROVISION, rest, auth_key)
        return json.loads(answer)

    def wipe(self, auth_key: bytes) -> None:
        self._privileged(m.WIPE, b"WIPE", auth_key)

    def events(self, from_seq: int = 1) -> list[list]:
        """The token's event log from `from_seq`: [[seq, time, code, detail], ...]."""
        out: list[list] = []
        while True:
            page = json.loads(self.call(m.EVENTS, hc.events_request(from_seq, 255)))
            if not page:
                return out
            out.extend(page)
            from_seq = page[-1][0] + 1


_FIELD_RULES = {
    "serial": "the serial must look like TT-7F3A9C21",
    "role": "the role must be wearable or venue",
    "identity": "the identity must be escrowed or private",
    "seed": "an escrowed token needs a 16-byte seed",
    "auth_key": "the auth key must be 32 bytes",
    "tx_power_dbm": "the TX power must be an integer from -127 to 20 dBm",
    "board": "the board must be a short name",
}


def explain_refusal(cmd: int, code: int, detail: str) -> str:
    """The sentence for a token's terse ERROR (the token keeps its texts short to save RAM)."""
    if code == m.E_AUTH:
        if detail == "wrong auth key":
            return "authentication failed: wrong auth key for this token"
        return "authentication required: the token wants a fresh challenge (run the command again)"
    if code == m.E_NOT_PROVISIONED:
        return "the token is not provisioned, so it has no auth key yet"
    if code == m.E_HELLO_FIRST:
        return "the token expected a handshake first (run the command again)"
    if code == m.E_UNKNOWN_COMMAND:
        return "the token's firmware does not know this command; deploy newer firmware"
    if code == m.E_REFUSED and detail.endswith(" unsynced"):
        return f"the token holds {detail.split()[0]} records not yet synced: sync it (or wipe it) first"
    if code == m.E_BAD_REQUEST and cmd == m.PROVISION and detail in _FIELD_RULES:
        return f"invalid identity: {_FIELD_RULES[detail]}"
    if code == m.E_BAD_REQUEST and detail.startswith("host time") or "outside" in detail:
        return f"this computer's clock looks wrong ({detail}); fix the date and time and sync again"
    if code == m.E_INTERNAL:
        return f"the token hit an internal error ({detail}); reset it and try again"
    return detail or f"error {code}"


def _repl_message(port: str) -> str:
    return (f"a plain MicroPython REPL answered on {port}, not the token app: deploy the app "
            f"(tokentool deploy --port {port}) or, if it is a token, reset it so the app runs again")
