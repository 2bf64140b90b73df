# The token's radio over MicroPython's `bluetooth` module (NimBLE on ESP32; the virtual air on
# the unix port). It is the Board's `radio` adapter (docs/design.md):
#
#   advertise(payload, interval_ms)  legacy non-connectable GAEN advertising; every call takes
#                                    a new random non-resolvable address, so RPI and address
#                                    always change together (never one without the other)
#   stop_advertising()
#   start_scan(duration_ms)          one passive scan window (continuous listening inside it)
#   scanning()
#   take_reports(callback)           callback(adv_data, rssi) for each report the IRQ handler
#                                    copied into the ring buffer since the last call
#   pending()                        how many reports wait in the ring (the IRQ's signal)
#   dropped / ignored / heard        reports lost to a full ring / not GAEN / kept
#   on_time(now_ms)                  radio on-time counters (power accounting)
#   set_profile(profile)             a power profile's radio rules (burst: on air only while awake)
#   advertise_sync(adv, resp, ms) / end_sync() / sync_disconnected()   the sync window's
#                                    connectable advertisement (tokenfw.ble_sync)
#
# The IRQ handler runs whenever NimBLE has an event (on ESP32 through the scheduler, between
# any two bytecodes of the main loop). It only copies a report into a preallocated slot and
# bumps a counter; the main loop does the parsing. Producer and consumer each own one counter
# (`_produced` written only by the IRQ, `_consumed` only by the loop), so no update is lost when
# the IRQ interrupts a drain. A burst of thousands of reports fills the ring once and the rest
# is counted in `dropped`: nothing grows with the traffic.
#
# Edge cases: adv_data longer than a legacy report (31 bytes) or not a GAEN structure is
# counted in `ignored` without touching the ring; a rotation while a scan window is open stops
# the scan (the controller refuses a new address while scanning), rotates, and resumes the
# window for its remaining time. SCAN_DONE only records which window it ended: the main loop
# counts on-time by its own clock, so a window split by a rotation counts its length once even
# when the stop's SCAN_DONE is delivered seconds later.
from tokenfw import adv

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
_IRQ_MTU_EXCHANGED = const(21)

_ADDR_MODE_NRPA = const(3)  # NimBLE: a new non-resolvable private address on every call
_SCAN_INTERVAL_US = const(30000)  # window == interval: listen continuously inside a window
_SCAN_WINDOW_US = const(30000)
_LEGACY_MAX = const(31)
_SLOT = const(33)  # rssi (1) + length (1) + data (31)
DEFAULT_RING_SLOTS = const(64)
# One legacy advertising event: a PDU of 8 + 31 bytes on each of 3 channels at 1 Mb/s plus
# radio ramp-up and channel switching, ~1.4 ms of TX per event (Core spec timing, ESP32 datasheet).
ADV_EVENT_US = const(1400)
# The controller adds 0-10 ms of random advDelay to each advertising interval (Core spec).
_ADV_DELAY_MEAN_MS = const(5)
_TICKS_MASK = const(0x3FFFFFFF)  # time.ticks_ms() period on MicroPython
# How long after a window's end SCAN_DONE may come before the window is closed by force (the
# virtual air reports it on its next tick, which is tens of token seconds at high time scales).
_SCAN_DONE_GRACE_MS = const(60000)


def _diff_ms(later, earlier):
    return (later - earlier) & _TICKS_MASK


class Radio:
    def __init__(self, now_ms, ble=None, ring_slots=DEFAULT_RING_SLOTS):
        """`now_ms()` is the board's millisecond tick (ticks_ms semantics, token time)."""
        if ble is None:
            import bluetooth

            ble = bluetooth.BLE()
        self._ble = ble
        self._now_ms = now_ms
        self._slots = ring_slots
        self._ring = bytearray(ring_slots * _SLOT)
        self._ringmv = memoryview(self._ring)
        self._produced = 0  # written by the IRQ handler only
        self._consumed = 0  # written by take_reports only
        self.dropped = 0
        self.ignored = 0
        self.heard = 0
        self.address = None
        self.rotations = 0
        self.scan_windows = 0  # scan windows opened (resumed halves of a rotation count too)
        self._advertising = None  # (payload, interval_ms, connectable) while on air
        self._adv_since = 0
        self._scan_gen = 0
        self._scan_done_gen = 0  # the last window whose on-time is counted (main loop only)
        self._scan_done_irq = 0  # the window SCAN_DONE was last reported for (IRQ only)
        self._scan_started = 0
        self._scan_ms = 0
        self.gatt = None  # the BLE sync service gets connection/GATT events through here
        self._sync = False  # a sync window's connectable advertisement is on air
        self._awake_only = False  # `burst` profile: on air only while a scan window is open
        self._held = None  # the advertisement a burst token sends at its next wake
        self._pending = None  # GAEN advertisement waiting for the sync window to close
        self._scan_on_ms = 0
        self._adv_events = 0
        self._adv_carry_ms = 0
        ble.active(True)
        ble.irq(self._irq)

    # -- IRQ: copy and count, nothing else -----------------------------------------------------
    def _irq(self, event, data):
        if event == _IRQ_SCAN_RESULT:
            adv_data = data[4]
            n = len(adv_data)
            if n > _LEGACY_MAX or adv.find_gaen(adv_data) < 0:
                self.ignored += 1
                return
            if self._produced - self._consumed >= self._slots:
                self.dropped += 1
                return
            base = (self._produced % self._slots) * _SLOT
            ring = self._ring
            ring[base] = data[3] & 0xFF
            ring[base + 1] = n
            self._ringmv[base + 2 : base + 2 + n] = adv_data
            self._produced += 1
        elif event == _IRQ_SCAN_DONE:
            # Deferred: the main loop counts the window's on-time against its own clock, so
            # a rotation's stop-and-resume never counts the same seconds twice.
            self._scan_done_irq = self._scan_gen
        elif self.gatt is not None:
            self.gatt.irq(event, data)

    def _close_scan(self, now):
        """Count the open window's on-time (main loop only); returns the ms it counted."""
        if self._scan_done_gen == self._scan_gen:
            return 0
        self._scan_done_gen = self._scan_gen
        counted = min(_diff_ms(now, self._scan_started), self._scan_ms)
        self._scan_on_ms += counted
        return counted

    def _scan_open(self):
        """Is the current window still open? Closes (counts) it first if SCAN_DONE came."""
        if self._scan_done_irq == self._scan_gen:
            self._close_scan(self._now_ms())
        return self._scan_done_gen != self._scan_gen

    # -- advertising ---------------------------------------------------------------------------
    def _account_adv(self, now):
        if self._advertising is None:
            return
        period_ms = self._advertising[1] + _ADV_DELAY_MEAN_MS
        elapsed = _diff_ms(now, self._adv_since) + self._adv_carry_ms
        events = elapsed // period_ms
        self._adv_events += events
        self._adv_carry_ms = elapsed - events * period_ms
        self._adv_since = now

    def advertise(self, payload, interval_ms, connectable=False, resp_data=None):
        """Advertise `payload` with a fresh random address (RPI and address change together).
        While a sync window is open the payload waits for the window to close."""
        if self._sync:
            self._pending = (payload, interval_ms, connectable, resp_data)
            return
        if self._awake_only:
            self._held = (payload, interval_ms, connectable, resp_data)
            if not self._scan_open():
                return  # asleep: goes on air at the next wake
        self._start_advertising(payload, interval_ms, connectable, resp_data)

    def set_profile(self, prof):
        """Follow a power profile's radio rules (scheduler.PROFILES): with
        `advertise_while_awake` (burst), advertise only during scan windows."""
        self._awake_only = bool(prof.get("advertise_while_awake"))
        if not self._awake_only and self._held is not None and self._advertising is None:
            self._start_advertising(*self._held)
        if not self._awake_only:
            self._held = None

    def _start_advertising(self, payload, interval_ms, connectable, resp_data, rotate=True):
        now = self._now_ms()
        self._account_adv(now)
        ble = self._ble
        ble.gap_advertise(None)
        self._advertising = None
        resume_ms = 0
        if self._scan_open():
            # The controller refuses a new address while scanning: stop, rotate, resume.
            ble.gap_scan(None)
            resume_ms = self._scan_ms - self._close_scan(now)
        if rotate:
            ble.config(addr_mode=_ADDR_MODE_NRPA)
            self.address = bytes(ble.config("mac")[1])
            self.rotations += 1
        ble.gap_advertise(interval_ms * 1000, adv_data=payload, resp_data=resp_data, connectable=connectable)
        self._advertising = (payload, interval_ms, connectable)
        self._adv_since = now
        if resume_ms > 0:
            self._begin_scan(resume_ms)  # the rest of the window (already on air: no re-advertising)

    def stop_advertising(self):
        self._account_adv(self._now_ms())
        self._ble.gap_advertise(None)
        self._advertising = None
        self._pending = None

    def advertising(self):
        return self._advertising is not None

    # -- the sync window's advertisement (tokenfw.ble_sync) -------------------------------------
    def advertise_sync(self, adv_data, resp_data, interval_ms):
        """Replace GAEN advertising by the connectable sync advertisement, on an address of its
        own (nothing links it to the GAEN address before or after). Offered again after a host
        disconnects, it keeps that address, so the host can reconnect to it."""
        rotate = not self._sync
        if rotate:
            self._sync = True
            self._pending = None
        self._start_advertising(adv_data, interval_ms, True, resp_data, rotate)

    def sync_disconnected(self):
        # The controller stopped advertising when the host connected.
        self._account_adv(self._now_ms())
        self._advertising = None

    def end_sync(self):
        """Close the sync advertisement. GAEN advertising resumes only with a new identifier
        (one that rotated during the window); otherwise the token stays silent until the next
        rotation, so the GAEN address never changes while its RPI stays."""
        self._sync = False
        self._account_adv(self._now_ms())
        self._ble.gap_advertise(None)
        self._advertising = None
        pending = self._pending
        self._pending = None
        if pending is not None:
            self._start_advertising(*pending)

    # -- scanning --------------------------------------------------------------------------------
    def start_scan(self, duration_ms):
        if self._awake_only and self._held is not None and not self._sync:
            # A burst token wakes: the stack lost its address in deep sleep, so the held
            # identifier goes on air under a new one (the RPI is unchanged; nothing new links).
            self._start_advertising(*self._held)
        self.scan_windows += 1
        self._begin_scan(duration_ms)

    def _begin_scan(self, duration_ms):
        self._close_scan(self._now_ms())  # the last window, if the loop has not looked since
        self._scan_gen += 1
        self._scan_started = self._now_ms()
        self._scan_ms = duration_ms
        self._ble.gap_scan(duration_ms, _SCAN_INTERVAL_US, _SCAN_WINDOW_US, False)

    def stop_scan(self):
        if self._scan_open():
            self._ble.gap_scan(None)
            self._close_scan(self._now_ms())

    def scanning(self):
        if self._awake_only and self._advertising is not None and not self._sync:
            # A burst wake lasts the scan window, by the token's own clock (SCAN_DONE may come
            # later): then back to (deep) sleep, off air.
            if _diff_ms(self._now_ms(), self._scan_started) >= self._scan_ms:
                self._account_adv(self._now_ms())
                self._ble.gap_advertise(None)
                self._advertising = None
        if not self._scan_open():
            return False
        if _diff_ms(self._now_ms(), self._scan_started) >= self._scan_ms + _SCAN_DONE_GRACE_MS:
            # SCAN_DONE never came (lost, or the stack was reset): stop listening for it.
            self.stop_scan()
            return False
        return True

    def pending(self):
        """Reports waiting in the ring: the IRQ's signal to the main loop that there is work."""
        return self._produced - self._consumed

    def take_reports(self, callback):
        """Hand every buffered report to callback(adv_data, rssi); returns how many."""
        n = 0
        while self._consumed != self._produced:
            base = (self._consumed % self._slots) * _SLOT
            rssi = self._ring[base]
            if rssi > 127:
                rssi -= 256
            length = self._ring[base + 1]
            data = bytes(self._ringmv[base + 2 : base + 2 + length])
            self._consumed += 1
            self.heard += 1
            n += 1
            callback(data, rssi)
        return n

    # -- power accounting -------------------------------------------------------------------------
    def on_time(self, now_ms=None):
        """Radio on-time so far: {"scan_ms", "adv_events", "adv_ms", "on_ms"}."""
        now = self._now_ms() if now_ms is None else now_ms
        self._account_adv(now)
        open_window = self.scanning()  # first: it may close (and count) the window
        scan_ms = self._scan_on_ms
        if open_window:
            scan_ms += min(_diff_ms(now, self._scan_started), self._scan_ms)
            # the open window is counted again when it closes: report it, do not store it
        adv_ms = self._adv_events * ADV_EVENT_US // 1000
        return {"scan_ms": scan_ms, "adv_events": self._adv_events, "adv_ms": adv_ms, "on_ms": scan_ms + adv_ms}
