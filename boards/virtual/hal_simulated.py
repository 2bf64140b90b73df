# A board whose time runs as fast as the CPU allows: the firmware's own main loop lives through
# a day of token time in seconds. Used to measure RAM and speed under the heap-capped
# interpreter, and by the simulator. Same Board interface as hal_virtual / hal_esp32.
#
# The radio behaves like the real one where it matters to the firmware: a scan only hears
# during its window, every nearby device advertises every ~250 ms, reports go through a
# fixed-size ring buffer between drains, and what does not fit is dropped and counted.
import hashlib
import struct

from tokenfw import adv

_ADV_PERIOD_S = 0.25
_RING_SLOTS = 64


class SimRtc:
    def __init__(self, start_s):
        self.now_s = float(start_s)

    def seconds(self):
        return int(self.now_s)

    def set_seconds(self, seconds):
        self.now_s = float(seconds)

    def ticks_ms(self):
        return int(self.now_s * 1000) & 0x3FFFFFFF

    def milliseconds(self):
        return int(self.now_s * 1000)


class SimRadio:
    """Hears a crowd described by `crowd(t) -> iterable of (device_id, rssi)`."""

    def __init__(self, rtc, crowd):
        self.rtc = rtc
        self.crowd = crowd
        self.advertising = None
        self.adv_changes = 0
        self.scan_until = 0.0
        self.last_drain = None
        self.dropped = 0
        self.delivered = 0
        self.radio_on_ms = 0

    def advertise(self, payload, interval_ms):
        self.advertising = bytes(payload)
        self.adv_changes += 1

    def stop_advertising(self):
        self.advertising = None

    def start_scan(self, duration_ms):
        self.scan_until = self.rtc.now_s + duration_ms / 1000
        self.last_drain = self.rtc.now_s
        self.radio_on_ms += duration_ms

    def scanning(self):
        return self.rtc.now_s < self.scan_until

    def stop_scan(self):
        if self.scan_until > self.rtc.now_s:
            self.radio_on_ms -= int((self.scan_until - self.rtc.now_s) * 1000)
            self.scan_until = self.rtc.now_s

    def on_time(self):
        """As tokenfw.radio counts it; this radio does not count its advertising events."""
        return {"scan_ms": self.radio_on_ms, "adv_ms": 0}

    @staticmethod
    def rpi_of(device_id, interval):
        digest = hashlib.sha256(struct.pack("<II", device_id, interval)).digest()
        return digest[:16], digest[16:20]

    def take_reports(self, callback):
        if self.last_drain is None:
            return
        now = min(self.rtc.now_s, self.scan_until)
        heard_s = now - self.last_drain
        self.last_drain = now if now < self.scan_until else None
        if heard_s <= 0:
            return
        # Each device advertised heard_s / 250 ms times since the last drain; the ring buffer
        # holds _RING_SLOTS reports, the rest overflowed while the app was busy.
        per_device = max(1, int(heard_s / _ADV_PERIOD_S))
        interval = int(now) // 600
        slots = _RING_SLOTS
        for device_id, rssi in self.crowd(now):
            rpi, aem = self.rpi_of(device_id, interval)
            payload = adv.gaen_payload(rpi, aem)
            for _ in range(per_device):
                if slots == 0:
                    self.dropped += 1
                    continue
                slots -= 1
                self.delivered += 1
                callback(payload, rssi)


class SimLed:
    def __init__(self):
        self.last = None
        self.shown = 0

    def show(self, pattern):
        self.last = pattern
        self.shown += 1


class SimButton:
    def pressed(self):
        return False


class SimBattery:
    def millivolts(self):
        return 3900

    def percent(self):
        return 80


class SimConsole:
    """No host attached; waiting just moves the simulated clock on."""

    def __init__(self, rtc):
        self.rtc = rtc

    def read_available(self):
        return b""

    def write(self, data):
        pass

    def wait(self, timeout_ms):
        self.rtc.now_s += max(timeout_ms, 1) / 1000


class Board:
    def __init__(self, start_s, crowd, name="simulated"):
        self.name = name
        self.rtc = SimRtc(start_s)
        self.radio = SimRadio(self.rtc, crowd)
        self.led = SimLed()
        self.button = SimButton()
        self.battery = SimBattery()
        self.console = SimConsole(self.rtc)
        self.deep_sleeps = 0
        self._rtc_memory = None
        self._woke = False

    # Deep sleep as hal_virtual emulates it: time passes with the radio off, RAM is lost by
    # contract (the caller builds a new Token), RTC memory is kept.
    def rtc_memory(self, data):
        self._rtc_memory = bytes(data)

    def wake_memory(self):
        return self._rtc_memory if self._woke else None

    def deep_sleep(self, ms):
        self.radio.stop_advertising()
        self.rtc.now_s += ms / 1000
        self.radio = SimRadio(self.rtc, self.radio.crowd)  # a fresh controller after the wake
        self._woke = True
        self.deep_sleeps += 1


def open_board(board_config, start_s=1767225600, crowd=None):
    return Board(start_s, crowd or (lambda t: ()), board_config.get("name", "simulated"))
