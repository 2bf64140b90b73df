# Sync over BLE: a GATT service that carries the very same sync protocol frames as the USB
# console (tokenfw.sync), offered only while a sync window is open.
#
#   service  7a1f0001-5c3e-4b8e-9d2a-1f0e7c6b5a40
#   rx       7a1f0002-5c3e-4b8e-9d2a-1f0e7c6b5a40  write (with response): host -> token bytes
#   tx       7a1f0003-5c3e-4b8e-9d2a-1f0e7c6b5a40  notify: token -> host bytes
#
# The characteristics are a byte pipe: the host writes request frames in pieces of at most
# MTU-3 bytes, the token answers with notifications of at most MTU-3 bytes (answers are
# gathered into full notifications, flushed when the request is answered); the frames' own
# CRC and stuffing (tokenfw.sync.framing) find the boundaries, so nothing here knows frames.
# Authentication is the protocol's own challenge-response, exactly as on serial.
#
# Sync window: opened by a button press (or on USB power) for `window_s`; while it is open the
# token advertises connectable with the service UUID and its serial as the name (in the scan
# response) instead of its GAEN identifier. When it closes, the token stays silent until its
# next identifier rotation, so the GAEN address never changes without the RPI (radio.py).
#
# Edge cases: writes arriving faster than the loop drains them fill a fixed inbound buffer and
# the excess is dropped and counted (the host's retry resends the frame); a host that drops the
# connection mid-dump just reconnects and resumes by sequence number (the protocol's DUMP is
# stateless between requests); notifications to a host that is gone raise OSError, which is
# swallowed (the answer is lost, the host retries); a second host while one is connected is
# not offered (the token advertises only while no one is connected).
try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

SERVICE_UUID = "7A1F0001-5C3E-4B8E-9D2A-1F0E7C6B5A40"
RX_UUID = "7A1F0002-5C3E-4B8E-9D2A-1F0E7C6B5A40"
TX_UUID = "7A1F0003-5C3E-4B8E-9D2A-1F0E7C6B5A40"

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)

_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)
_AD_FLAGS = const(0x01)
_AD_UUID128_COMPLETE = const(0x07)
_AD_NAME_COMPLETE = const(0x09)
_RX_WRITE_MAX = const(512)  # the longest ATT write value
_INBOUND_BYTES = const(1536)  # one request frame on the wire (1024) plus a chunk in flight
_DEFAULT_MTU = const(23)
_OUTBOX_BYTES = const(509)  # the longest notification value at the largest ATT MTU (512)
DEFAULT_WINDOW_S = const(120)
_SYNC_ADV_INTERVAL_MS = const(100)  # found quickly by the clinic's scanner while open


def _uuid_le(text):
    """16 bytes, little-endian, of a 128-bit UUID string."""
    raw = bytes.fromhex(text.replace("-", ""))
    return bytes(reversed(raw))


def sync_advertisement(serial):
    """(adv_data, resp_data) of the connectable sync-window advertisement."""
    adv_data = bytes((2, _AD_FLAGS, 0x06, 17, _AD_UUID128_COMPLETE)) + _uuid_le(SERVICE_UUID)
    name = (serial or "TT-UNPROVISIONED").encode()[:29]
    resp_data = bytes((len(name) + 1, _AD_NAME_COMPLETE)) + name
    return adv_data, resp_data


class BleSync:
    def __init__(self, radio, serial):
        import bluetooth

        self.radio = radio
        self.serial = serial
        self._ble = radio._ble
        service = (
            bluetooth.UUID(SERVICE_UUID),
            (
                (bluetooth.UUID(RX_UUID), _FLAG_WRITE),
                (bluetooth.UUID(TX_UUID), _FLAG_READ | _FLAG_NOTIFY),
            ),
        )
        ((self._rx, self._tx),) = self._ble.gatts_register_services((service,))
        self._ble.gatts_set_buffer(self._rx, _RX_WRITE_MAX)
        self._inbound = bytearray(_INBOUND_BYTES)
        self._inbound_len = 0
        self.overflows = 0
        self._outbox = bytearray(_OUTBOX_BYTES)
        self._outmv = memoryview(self._outbox)
        self._out_len = 0
        self._broken = False
        self.conn = None
        self.mtu = _DEFAULT_MTU
        self.window_until = None
        self.connections = 0
        radio.gatt = self

    # -- the window ----------------------------------------------------------------------------
    def open_window(self, now_s, window_s=DEFAULT_WINDOW_S):
        """Offer the sync service until now_s + window_s (a button press, or USB power)."""
        self.window_until = now_s + window_s
        if self.conn is None:
            self._advertise()

    def _advertise(self):
        adv_data, resp_data = sync_advertisement(self.serial)
        self.radio.advertise_sync(adv_data, resp_data, _SYNC_ADV_INTERVAL_MS)

    def window_open(self):
        return self.window_until is not None

    def tick(self, now_s):
        """Close the window when it is over and no host is connected."""
        if self.window_until is not None and now_s >= self.window_until and self.conn is None:
            self.window_until = None
            self.radio.end_sync()

    # -- IRQ (copies only) --------------------------------------------------------------------
    def irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle != self._rx or conn != self.conn:
                return
            value = self._ble.gatts_read(self._rx)
            n = len(value)
            if self._inbound_len + n > _INBOUND_BYTES:
                self.overflows += 1
                return
            self._inbound[self._inbound_len : self._inbound_len + n] = value
            self._inbound_len += n
        elif event == _IRQ_CENTRAL_CONNECT:
            if self.conn is None:
                self.conn = data[0]
                self.mtu = _DEFAULT_MTU
                self._inbound_len = 0
                self._out_len = 0
                self.connections += 1
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if data[0] == self.conn:
                self.conn = None
                self._inbound_len = 0
                self.radio.sync_disconnected()  # advertising stops on connect: offer again
                if self.window_until is not None:
                    self._advertise()
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self.conn:
                self.mtu = data[1]

    # -- the main loop's part ----------------------------------------------------------------
    def poll(self, feed):
        """Hand what the host wrote to feed(data, write) (a SyncServer's feed); what feed
        writes goes out as full notifications, the rest when feed returns."""
        if self._inbound_len == 0 or self.conn is None:
            return 0
        data = bytes(self._inbound[: self._inbound_len])
        self._inbound_len = 0
        self._broken = False
        feed(data, self.write)
        self.flush()
        return len(data)

    def write(self, data):
        """Queue `data` for the host; every full MTU-3 bytes go out as one notification (a DUMP
        answer is written record by record: one notification per record would waste the link)."""
        step = min(self.mtu - 3, _OUTBOX_BYTES)
        mv = memoryview(data)
        start = 0
        while start < len(data):
            n = min(step - self._out_len, len(data) - start)
            self._outbox[self._out_len : self._out_len + n] = mv[start : start + n]
            self._out_len += n
            start += n
            if self._out_len >= step:
                self.flush()

    def flush(self):
        n = self._out_len
        self._out_len = 0
        conn = self.conn
        if n == 0 or conn is None or self._broken:
            return
        try:
            self._ble.gatts_notify(conn, self._tx, self._outmv[:n])
        except OSError:
            self._broken = True  # the host went away mid-answer; it will ask again
