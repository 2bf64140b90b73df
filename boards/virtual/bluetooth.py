# MicroPython's `bluetooth` module for the virtual token: the subset of the ESP32 (NimBLE) API
# that the firmware uses, with the same IRQ event codes and argument shapes, carried to the
# virtual air (host_tools/air) over a unix socket. The air runs a bumble host and controller for
# this token, so what the firmware advertises and serves is built and parsed by a real BLE stack.
#
# Behaviour kept from the real port because firmware bugs hide behind it:
# - IRQ arguments `addr` and `adv_data` are memoryviews into a buffer reused by the next event:
#   a handler that keeps them instead of copying sees them change (as on the board).
# - `config(addr_mode=3)` takes a new random non-resolvable address on every call, and fails
#   with OSError(EBUSY) while advertising or scanning (the controller refuses a new address).
# - A characteristic's write buffer holds 20 bytes unless `gatts_set_buffer` says otherwise;
#   longer writes are truncated.
# - IRQs run when the firmware calls into this module or when the board services the socket
#   (`service()`); on the board they arrive from the NimBLE task at any time.
#
# Virtual-only extras: `attach(socket_path, name)` (which air, and the device's name in the
# scenario); `service()` and `poll_object()` for the board's wait loop; `time_scale()`.
import errno
import json
import os
import select
import socket
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

FLAG_BROADCAST = const(0x0001)
FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
_IRQ_MTU_EXCHANGED = const(21)

# Wire kinds (host_tools/air/protocol.py)
_HELLO = const(0x01)
_ACTIVE = const(0x02)
_SET_ADDR = const(0x03)
_ADVERTISE = const(0x04)
_SCAN = const(0x05)
_REGISTER = const(0x06)
_NOTIFY = const(0x07)
_SET_VALUE = const(0x08)
_DISCONNECT = const(0x09)
_WELCOME = const(0x81)
_STATUS = const(0x82)
_REGISTERED = const(0x83)
_SCAN_RESULT = const(0x84)
_SCAN_DONE = const(0x85)
_CENTRAL_CONNECT = const(0x86)
_CENTRAL_DISCONNECT = const(0x87)
_GATTS_WRITE = const(0x88)
_MTU_EXCHANGED = const(0x89)

_RX_SIZE = const(1280)
_MAX_FRAME = const(640)
_DEFAULT_BUFFER = const(20)
_MAX_PENDING = const(16)  # events that arrive while an IRQ handler runs
_REPLY_TIMEOUT_MS = const(10000)
_EPROTO = const(71)  # not in MicroPython's errno module

_attach = [None, "token"]


def attach(socket_path, name):
    """Say which virtual air this token lives in, and its name in the air's scenario."""
    _attach[0] = socket_path
    _attach[1] = name


class UUID:
    def __init__(self, value):
        if isinstance(value, UUID):
            value = value._text
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            text = "%04X" % value
        elif isinstance(value, str):
            hexdigits = value.replace("-", "")
            if len(hexdigits) != 32:
                raise ValueError("invalid UUID")
            int(hexdigits, 16)  # ValueError when not hex
            text = value.upper()
        elif isinstance(value, (bytes, bytearray, memoryview)) and len(value) in (2, 16):
            raw = bytes(value)[::-1]  # little-endian on the wire
            h = "".join("%02X" % b for b in raw)
            text = h if len(raw) == 2 else "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        else:
            raise ValueError("invalid UUID")
        self._text = text

    def __str__(self):
        return "UUID(%s)" % self._text

    def __eq__(self, other):
        return isinstance(other, UUID) and other._text == self._text

    def __hash__(self):
        return hash(self._text)


def _read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.read(n - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET)
        data += chunk
    return data


class _BLE:
    def __init__(self):
        self._sock = None
        self._poller = None
        self._handler = None
        self._rx = bytearray(_RX_SIZE)
        self._rxmv = memoryview(self._rx)
        self._rxlen = 0
        self._ev = bytearray(_MAX_FRAME)
        self._evmv = memoryview(self._ev)
        self._pending = []
        self._in_irq = False
        self._sent = 0  # commands sent, in order
        self._answered = 0  # answers received, in the same order
        self._replies = {}  # command number -> its answer, until its caller takes it
        self._addr = bytes(6)
        self._addr_type = 1
        self._addr_mode = 1
        self._mtu = 23
        self._gap_name = "MPY ESP32"
        self._rxbuf = 0
        self._adv_data = b""
        self._resp_data = b""
        self._values = {}
        self._buffers = {}
        self._time_scale = 1.0

    # -- link to the air ------------------------------------------------------------------
    def _connect(self):
        path = _attach[0] or os.getenv("VIRTUAL_AIR")
        if not path:
            raise OSError(errno.ENODEV)  # no radio: the virtual token was started without an air
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
        hello = json.dumps({"name": _attach[1] or os.getenv("VIRTUAL_AIR_NAME") or "token"}).encode()
        sock.write(b"TTA1" + struct.pack("<HB", len(hello) + 1, _HELLO) + hello)
        length = struct.unpack("<H", _read_exactly(sock, 2))[0]
        welcome = _read_exactly(sock, length)
        if welcome[0] != _WELCOME:
            raise OSError(_EPROTO)
        self._time_scale = float(json.loads(welcome[1:]).get("time_scale", 1.0))
        sock.setblocking(False)
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._rxlen = 0
        self._sent = self._answered = 0
        self._replies = {}
        # A random static address until the firmware asks for another mode.
        raw = bytearray(os.urandom(6))
        raw[0] |= 0xC0
        self._set_address(bytes(raw))

    def _send(self, kind, body):
        frame = struct.pack("<HB", len(body) + 1, kind) + body
        sock = self._sock
        sent = 0
        while sent < len(frame):
            n = sock.write(frame[sent:])
            if n:
                sent += n
            else:
                select.poll().poll(1)

    def _request(self, kind, body, reply_kind=_STATUS):
        """Send a command and wait for its answer, delivering events that arrive meanwhile.
        An IRQ handler may send a command of its own while another waits (restarting
        advertising on a disconnect): the air answers in order, so answers are matched to
        commands by their position."""
        self._need()
        ticket = self._sent
        self._sent += 1
        self._send(kind, body)
        waited_ms = 0
        while ticket not in self._replies:
            if not self._pump(True):
                self._poller.poll(10)
                waited_ms += 10
                if waited_ms > _REPLY_TIMEOUT_MS:
                    raise OSError(errno.ETIMEDOUT)
        reply = self._replies.pop(ticket)
        if reply_kind == _STATUS:
            err = struct.unpack("<h", reply[2:4])[0]
            if err:
                raise OSError(err)
            return None
        return reply[1:]

    def _need(self):
        if self._sock is None:
            raise OSError(errno.EPERM)  # as the board does before active(True)

    def _pump(self, want_reply=False):
        """Read what the air sent and dispatch complete frames; True if any arrived."""
        got = False
        while True:
            n = self._sock.readinto(self._rxmv[self._rxlen:])
            if n == 0:
                self._sock = None
                raise OSError(errno.ECONNRESET)  # the air went away
            if n is None:
                break
            self._rxlen += n
            got = True
            while self._rxlen >= 2:
                length = self._rx[0] | (self._rx[1] << 8)
                if length == 0 or length > _MAX_FRAME:
                    raise OSError(_EPROTO)
                if self._rxlen < 2 + length:
                    break
                kind = self._rx[2]
                dispatch = False
                if kind in (_STATUS, _REGISTERED):
                    self._replies[self._answered] = bytes(self._rx[2 : 2 + length])
                    self._answered += 1
                elif self._in_irq:
                    if len(self._pending) < _MAX_PENDING:
                        self._pending.append(bytes(self._rx[2 : 2 + length]))
                else:
                    self._ev[:length] = self._rxmv[2 : 2 + length]
                    dispatch = True
                # Consume the frame before the handler runs: a handler may call back into this
                # module (restart advertising on disconnect), which reads the socket again.
                rest = self._rxlen - 2 - length
                self._rxmv[:rest] = self._rxmv[2 + length : self._rxlen]  # in place: no copy
                self._rxlen = rest
                if dispatch:
                    self._dispatch(length)
            if want_reply and self._replies:
                break
        while self._pending and not self._in_irq:
            frame = self._pending.pop(0)
            self._ev[: len(frame)] = frame
            self._dispatch(len(frame))
        return got

    def _dispatch(self, length):
        ev = self._evmv
        kind = self._ev[0]
        if kind == _SCAN_RESULT:
            rssi = self._ev[9]
            args = (self._ev[1], ev[2:8], self._ev[8], rssi - 256 if rssi > 127 else rssi, ev[10:length])
            self._irq(_IRQ_SCAN_RESULT, args)
        elif kind == _SCAN_DONE:
            self._irq(_IRQ_SCAN_DONE, ())
        elif kind in (_CENTRAL_CONNECT, _CENTRAL_DISCONNECT):
            conn = self._ev[1] | (self._ev[2] << 8)
            event = _IRQ_CENTRAL_CONNECT if kind == _CENTRAL_CONNECT else _IRQ_CENTRAL_DISCONNECT
            self._irq(event, (conn, self._ev[3], ev[4:10]))
        elif kind == _GATTS_WRITE:
            conn, handle = struct.unpack_from("<HH", self._ev, 1)
            self._store_write(handle, ev[5:length])
            self._irq(_IRQ_GATTS_WRITE, (conn, handle))
        elif kind == _MTU_EXCHANGED:
            conn, mtu = struct.unpack_from("<HH", self._ev, 1)
            self._irq(_IRQ_MTU_EXCHANGED, (conn, mtu))

    def _irq(self, event, data):
        if self._handler is None:
            return
        self._in_irq = True
        try:
            self._handler(event, data)
        finally:
            self._in_irq = False

    def _store_write(self, handle, data):
        size, append = self._buffers.get(handle, (_DEFAULT_BUFFER, False))
        if append:
            value = self._values.get(handle, b"") + bytes(data)
            self._values[handle] = value[:size]
        else:
            self._values[handle] = bytes(data[:size])

    def _set_address(self, addr):
        self._request(_SET_ADDR, struct.pack("<B", 1) + addr)
        self._addr = addr
        self._addr_type = 1

    # -- the real API ---------------------------------------------------------------------
    def active(self, change=None):
        if change is None:
            return self._sock is not None
        if change and self._sock is None:
            self._connect()
        elif not change and self._sock is not None:
            self._sock.close()
            self._sock = None
        return self._sock is not None

    def config(self, *args, **kwargs):
        if args:
            name = args[0]
            if name == "mac":
                return (self._addr_type, self._addr)
            if name == "addr_mode":
                return self._addr_mode
            if name == "gap_name":
                return self._gap_name
            if name == "mtu":
                return self._mtu
            if name == "rxbuf":
                return self._rxbuf
            raise ValueError("unknown config param")
        for name in kwargs:
            value = kwargs[name]
            if name == "addr_mode":
                self._need()
                raw = bytearray(os.urandom(6))
                if value == 3:
                    raw[0] &= 0x3F  # non-resolvable private: the two top bits are 00
                elif value in (1, 2):
                    raw[0] |= 0xC0  # static (RPA identity stand-in)
                else:
                    raise OSError(errno.EINVAL)  # no public address on the virtual board
                self._set_address(bytes(raw))
                self._addr_mode = value
            elif name == "mtu":
                if not 23 <= value <= 517:
                    raise ValueError("invalid MTU")
                self._mtu = value
            elif name == "gap_name":
                self._gap_name = value
            elif name == "rxbuf":
                self._rxbuf = value
            else:
                raise ValueError("unknown config param")
        return None

    def irq(self, handler):
        self._handler = handler

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if adv_data is not None:
            self._adv_data = bytes(adv_data)
        if resp_data is not None:
            self._resp_data = bytes(resp_data)
        if interval_us is None:
            self._request(_ADVERTISE, struct.pack("<IBB", 0, 0, 0))
            return
        if len(self._adv_data) > 31 or len(self._resp_data) > 31:
            raise OSError(errno.EINVAL)
        body = struct.pack("<IBB", max(int(interval_us), 1), 1 if connectable else 0, len(self._adv_data))
        self._request(_ADVERTISE, body + self._adv_data + self._resp_data)

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if duration_ms is None:
            self._request(_SCAN, struct.pack("<iIIB", -1, 0, 0, 0))
            return
        self._request(_SCAN, struct.pack("<iIIB", int(duration_ms), int(interval_us), int(window_us), 1 if active else 0))

    def gap_disconnect(self, conn_handle):
        try:
            self._request(_DISCONNECT, struct.pack("<H", conn_handle))
        except OSError:
            return False
        return True

    def gatts_register_services(self, services_definition):
        spec = []
        for service in services_definition:
            chars = []
            for characteristic in service[1]:
                chars.append([self._uuid_text(characteristic[0]), int(characteristic[1])])
            spec.append([self._uuid_text(service[0]), chars])
        reply = self._request(_REGISTER, json.dumps(spec).encode(), _REGISTERED)
        handles = json.loads(reply)
        for row in handles:
            for handle in row:
                self._values[handle] = b""
        return tuple(tuple(row) for row in handles)

    @staticmethod
    def _uuid_text(uuid):
        if not isinstance(uuid, UUID):
            raise TypeError("expected UUID")
        return uuid._text

    def gatts_read(self, value_handle):
        self._need()
        return self._values.get(value_handle, b"")

    def gatts_write(self, value_handle, data, send_update=False):
        data = bytes(data)
        self._values[value_handle] = data
        self._request(_SET_VALUE, struct.pack("<H", value_handle) + data)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        if data is None:
            data = self._values.get(value_handle, b"")
        self._request(_NOTIFY, struct.pack("<HHB", conn_handle, value_handle, 0) + bytes(data))

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        if data is None:
            data = self._values.get(value_handle, b"")
        self._request(_NOTIFY, struct.pack("<HHB", conn_handle, value_handle, 1) + bytes(data))

    def gatts_set_buffer(self, value_handle, length, append=False):
        self._buffers[value_handle] = (int(length), bool(append))

    # -- virtual-only -----------------------------------------------------------------------
    def service(self):
        """Deliver IRQs for whatever the air sent (the board's wait loop calls this)."""
        if self._sock is not None and not self._in_irq:
            self._pump()

    def poll_object(self):
        return self._sock

    def time_scale(self):
        return self._time_scale


_ble = []


def BLE():
    if not _ble:
        _ble.append(_BLE())
    return _ble[0]


def service():
    if _ble:
        _ble[0].service()


def poll_object():
    return _ble[0].poll_object() if _ble else None
