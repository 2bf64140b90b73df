# A small stand-in for the app's Token object, built from the real Store, KeyStore, EventLog
# and Clock on a scratch directory, for tests of the sync server (MicroPython and CPython).
import gc
import json
import os

# The biggest modules first: each compiles while the heap is still empty (100 KB cap).
from tokenfw.store import Store  # isort: skip
from tokenfw.sync.server import SyncServer  # isort: skip
from mptest import remove_tree, scratch_dir
from tokenfw import config
from tokenfw.clock import Clock
from tokenfw.records import Encounter
from tokenfw.sync import auth, framing
from tokenfw.sync import host_codec as hc
from tokenfw.sync import messages as m

try:
    from tokenfw.eventlog import EventLog
    from tokenfw.keystore import KeyStore
except ImportError:
    from tokenfw.store import EventLog, KeyStore


class Rtc:
    """An RTC that reads a fixed time we move by hand."""

    def __init__(self, seconds):
        self.now = seconds

    def seconds(self):
        return self.now

    def set_seconds(self, seconds):
        self.now = seconds

    def ticks_ms(self):
        return 0


class Battery:
    def millivolts(self):
        return 3900

    def percent(self):
        return 67


class Board:
    name = "standin"
    battery = Battery()


class Token:
    version = "test-1"

    def __init__(self, root, rtc_seconds=1000):
        self.root = root
        self.board = Board()
        self.events = EventLog(root + "/events.bin")
        self.store = Store(root + "/log", events=self.events)
        self.keys = KeyStore(root + "/keys.bin")
        self.rtc = Rtc(rtc_seconds)
        self.clock = Clock(self.rtc, root + "/clock.json")
        self.config = config.load(root + "/config.json", {}) or {}
        self.last_sync_at = None
        self.wiped = 0

    def reconfigure(self, new_config):
        config.save(self.root + "/config.json", new_config)
        self.config = new_config

    def wipe(self):
        self.store.wipe()
        self.keys.wipe()
        self.events.wipe()
        self.wiped += 1

    def note_synced(self, now):
        self.last_sync_at = now


def encounter(i, first_seen=1000):
    rpi = bytes([(i >> 8) & 0xFF, i & 0xFF]) + bytes([3, 0xC0, 0xDB, 0x1C]) + os.urandom(10)
    return Encounter(rpi, os.urandom(4), first_seen + i, 60, 2, -60, -70, 0)


def fill(token, n, first_seen=1000):
    for i in range(n):
        token.store.append(encounter(i, first_seen))
    token.store.commit()


KEY = bytes(range(32))
IDENTITY = {"serial": "TT-0000BEEF", "role": "wearable", "identity": "escrowed",
             "seed": "00112233445566778899aabbccddeeff", "auth_key": KEY.hex() if hasattr(KEY, "hex") else "",
             "tx_power_dbm": -8}


def to_hex(data):
    return "".join("%02x" % b for b in data)


# One reader for every test, allocated once (a 100 KB heap fragments fast); big enough for a
# 64-record DUMP answer (the host-side tests on CPython cover full 128-record chunks).
_READER = None


class Host:
    """Just enough of a host to talk to a SyncServer in-process."""

    def __init__(self, token):
        global _READER
        if _READER is None:
            gc.collect()
            _READER = framing.FrameReader(3000)
        self.server = SyncServer(token)
        self.req = 0
        self.sent = []

    def raw(self, wire):
        bodies = []
        _READER.reset()
        gc.collect()
        self.server.feed(wire, lambda piece: _READER.feed(piece, bodies.append))
        assert _READER.bad == 0, "the token sent a damaged frame"
        return bodies

    def ask(self, cmd, payload=b"", req=None):
        if req is None:
            self.req = (self.req + 1) & 0xFF
            req = self.req
        bodies = self.raw(framing.encode(m.body(cmd, req, payload)))
        assert len(bodies) == 1, bodies
        body = bodies[0]
        assert body[1] == req
        return body[0], body[2:]

    def ok(self, cmd, payload=b""):
        kind, answer = self.ask(cmd, payload)
        assert kind == cmd | m.RESPONSE, (kind, answer)
        return answer

    def greet(self):
        return hc.parse_hello_response(self.ok(m.HELLO, hc.hello_request(1, 1)))

    def privileged(self, cmd, rest, key=KEY):
        nonce = self.ok(m.CHALLENGE)
        return self.ask(cmd, auth.mac(key, nonce, cmd, rest) + rest)


def new_token(n=0):
    root = scratch_dir("sync")
    token = Token(root)
    if n:
        fill(token, n)
    return token


def done(token):
    remove_tree(token.root)
